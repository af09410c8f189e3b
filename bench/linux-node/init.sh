#!/bin/sh
# /init of the Linux + Node.js baseline guest (bench/linux-node): busybox sh as PID 1 mounts the
# pseudo file systems, loads the virtio-mmio and virtio-net modules, configures eth0 statically
# from the kernel command line (nodeip=A.B.C.D/N nodegw=G, which the kernel hands to init as
# environment variables) and replaces itself with Node.js serving /srv on port 80.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r module; do insmod "/lib/modules/$module.ko" || echo "init: insmod $module failed"; done < /lib/modules/load-order
i=0
while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt 500 ]; do usleep 10000; i=$((i + 1)); done
ip link set lo up
ip addr add "$nodeip" dev eth0
ip link set eth0 up
[ -n "$nodegw" ] && ip route add default via "$nodegw"
echo "init: eth0 $nodeip up"
cd /srv
exec /bin/node /server.js /srv 80
