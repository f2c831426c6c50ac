"""The media engine: PyAV (FFmpeg's libraries, in-process) for probing, decoding and encoding."""

from rotoscope.media.decode import DecodedFrame, check_fps, decode_frames, output_size
from rotoscope.media.encode import EncodeSettings, check_timestamps, encode_segmented, encode_video
from rotoscope.media.images import FORMATS, save_image
from rotoscope.media.probe import AudioInfo, VideoInfo, probe
from rotoscope.media.segments import SegmentCache

__all__ = [
    "FORMATS",
    "AudioInfo",
    "DecodedFrame",
    "EncodeSettings",
    "SegmentCache",
    "VideoInfo",
    "check_fps",
    "check_timestamps",
    "decode_frames",
    "encode_segmented",
    "encode_video",
    "output_size",
    "probe",
    "save_image",
]
