#   pyfleet-broker example configuration (ZPL, CZMQ zconfig). Keys are the long flags;
#   flags given on the command line override them. Run: pyfleet-broker --config deploy/broker.zpl
broker
    #   Clients and agents. With CurveZMQ (docs/SECURITY.md) the endpoint is encrypted and
    #   admits only the keys whose public certificates are in curve-allow.
    bind = tcp://0.0.0.0:5555
    #curve-cert = /etc/pyfleet/broker
    #curve-allow = /etc/pyfleet/allowed
    #   Clients on this host, without ZeroMQ (unix://PATH); the socket file's mode decides who.
    #unix = /run/pyfleet/broker.sock
    #   Operators and monitoring: keep them on loopback (they carry no keys).
    mgmt = tcp://127.0.0.1:5556
    events = tcp://127.0.0.1:5557
    #   An agent inside this process for the bridges of this host (a pyfleet-worker file).
    #local-worker = /etc/pyfleet/worker.zpl
    #   Bounds: BUSY at once beyond them.
    queue-max = 10000
    session-queue-max = 1000
    max-body = 67108864
    #   Deadlines and lifetimes (ms, except session-ttl in seconds).
    timeout = 30000
    session-ttl = 1800
    startup-grace = 5000
    heartbeat = 1000
    liveness = 3
    #   Requests in flight per bridge while its oldest has run less than window-ms.
    window = 32
    window-ms = 10
    log-level = info
