"""``python -m bot.emulator``: serve the local exchange until interrupted."""

from bot.emulator.run import main

main()
