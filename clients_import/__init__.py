"""Client Import: the command line and the local broker that compose the services."""
