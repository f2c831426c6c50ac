from rotoscope.cli import main

main()
