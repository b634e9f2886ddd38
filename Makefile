# Local services (real Kafka in KRaft mode + redis-server on loopback, no Docker):
# see scripts/services.sh for ports, cache and state directories.
.PHONY: services-up services-down services-status

SERVICES := bash scripts/services.sh

services-up:
	$(SERVICES) start

services-down:
	$(SERVICES) stop

services-status:
	$(SERVICES) status
