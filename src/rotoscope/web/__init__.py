"""The web studio: ``rotoscope serve``, the HTTP API and the pages over the same library verbs."""
