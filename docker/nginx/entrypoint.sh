#!/bin/sh
# Render the nginx config from the environment, then run nginx in the foreground.
#   LB_UPSTREAMS       space-separated host:port of the api replicas
#   LB_LISTEN          what nginx listens on: a port, or address:port
#   LB_MAX_BODY_BYTES  request body limit, the service's CIFAR10_MAX_UPLOAD_BYTES
set -eu
servers=""
for upstream in $LB_UPSTREAMS; do
    # Passive health: a replica that fails (refuses, times out, 502/503/504) twice
    # within 10 s is left out for 10 s and its request retried on the next one.
    servers="$servers        server $upstream max_fails=2 fail_timeout=10s;
"
done
awk -v servers="$servers" -v listen="$LB_LISTEN" -v body="$LB_MAX_BODY_BYTES" '
    { gsub(/@LB_LISTEN@/, listen); gsub(/@MAX_BODY@/, body) }
    /@SERVERS@/ { printf "%s", servers; next }
    { print }
' /etc/nginx/nginx.conf.template > /etc/nginx/nginx.conf
nginx -t -q
exec nginx -g 'daemon off;'
