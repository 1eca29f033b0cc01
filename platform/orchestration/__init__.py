"""Every Ray touchpoint of the platform: cluster connection, Ray Train runs, Ray Tune studies,
Ray Jobs submission."""
