"""``python -m evframe`` is the same as ``python -m evframe.run``."""

from evframe.run import main

main()
