"""Tick producer: a market simulator and a file replayer that publish contract ticks to Kafka."""
