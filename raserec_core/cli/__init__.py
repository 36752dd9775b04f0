"""The command line: the only edge that reads argv and the environment and chooses the device."""
