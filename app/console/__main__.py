import sys

from app.console.main import main

sys.exit(main(sys.argv[1:]))
