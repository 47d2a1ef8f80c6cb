"""Local stand-ins for the outside world: the Sage X3 simulator and the demo SFTP export."""
