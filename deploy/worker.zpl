#   pyfleet-worker example configuration (ZPL, CZMQ zconfig).
#   Run: pyfleet-worker --config deploy/worker.zpl   (flags override these keys), or
#   pyfleet-broker --local-worker deploy/worker.zpl  (the agent inside the broker; broker key unused)
worker
    broker = tcp://127.0.0.1:5555
    #   CurveZMQ (docs/SECURITY.md), for a broker started with --curve-cert: this
    #   agent's certificate (`pyfleet keygen /etc/pyfleet/agent`, its public file in the
    #   broker's --curve-allow directory) and the broker's public key or certificate.
    #curve-cert = /etc/pyfleet/agent
    #broker-key = /etc/pyfleet/broker
    service = demo
    bridges = 4
    module = examples/commands.py
    python = /usr/bin/python3
    #   Recycling: after ~1000 requests or ~1 h (each +/-10 % per bridge), or above 512 MB.
    max-requests = 1000
    max-age = 3600
    max-rss = 512
    jitter = 10
    max-recycling = 1
    #   A replacement starts at 80 % of the request limit (or ~2 startups before a limit)
    #   and waits ready, so the swap at the limit costs no request a Python start.
    prespawn = 80
    drain-cap = 60
    #   Requests in a bridge's pipe: about 1 ms of its usual work, at least 2, at most 8;
    #   it reads the next the moment it answers one. One waiting at the agent behind a
    #   request that has run 10 ms goes back to the broker.
    pipeline = 8
    hold = 10
    #   Beats: one a second; three missed and the bridge is wedged, killed, replaced.
    beat = 1000
    wedged-beats = 3
    startup-timeout = 30000
    stop-grace = 2000
    #   Runs on every new bridge before it takes work (repeatable).
    setup = 'echo {"configured": true}'
    #   Bridges get OMP/OPENBLAS/MKL_NUM_THREADS=1 unless overridden here (repeatable).
    env = "OMP_NUM_THREADS=2"
    log-level = info
