"""Sources: the only code that talks to origins (directories, queues, clocks, brokers)."""
