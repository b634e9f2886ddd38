"""The evented shell: Kafka in and out (Faust), Redis serving, metrics, and the command line."""
