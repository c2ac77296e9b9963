#!/bin/sh
# shellcheck shell=dash
# kindling guest init script (busybox ash, PID 1): /init (guest/rootfs/init.c) has marked the
# boot-timer port ("user space reached") and runs it as /bin/sh /etc/kindling/init.sh. It
# 1. mounts proc, sysfs and devtmpfs;
# 2. runs the checks named on the kernel command line, kindling.check=CHECK[,CHECK...]:
#      write-vdb   write /etc/kindling/pattern.bin to the start of /dev/vdb, sync, read back
#      ro-vdb      a write to /dev/vdb must fail (read-only disk)
#      trim-vdb    /dev/vdb holds ext4 with del.bin, keep.bin and keep.sha256: mount it, delete
#                  del.bin, fstrim (DISCARD reaches the host), check keep.bin, unmount
#      faults-vdb  /dev/vdb fails sectors 2048-2055 (the host gives it fault=eio@2048+8 and
#                  fault=short@4096+8): reads and writes there fail, the sectors around them
#                  work, before and after the errors (kindling's fault-injection testing)
#      cpus=N      N CPUs online
#      root-vda    / is mounted from /dev/vda
#      disks=N     exactly N virtio disks (vda, vdb, ...): a disk described twice (MP table +
#                  command line, and ACPI) is still one disk
#      acpi=on|off the kernel found kindling's ACPI tables (on) or runs without ACPI (off)
#      grow-vdb=N  wait (up to ~2 minutes) until /dev/vdb has N sectors: the host swapped its
#                  image (PATCH /drives) and the guest saw the config-change interrupt
#      wait-cad    wait (up to 2 minutes) for Ctrl-Alt-Del from the host (SendCtrlAltDel): the
#                  kernel restarts at once (needs CONFIG_VT, the acpi kernel has it)
#      shell       an interactive shell after the checks
#    prints "KINDLING-VERDICT: PASS" or "KINDLING-VERDICT: FAIL <what>" and ends the VM the
#    way kindling.end=reboot|poweroff|halt says (default reboot: `reboot -f`);
# 3. without checks: an interactive shell on the console; exit/poweroff/reboot end the VM.
#
# On PVM hosts every new process costs seconds (fork, exec and page faults run emulated
# kernel code), so this script leans on ash builtins: `read` instead of cat, shell
# arithmetic instead of expr/wc, one `mount -a` for all three file systems.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
umask 022

# proc, sysfs, devtmpfs from /etc/fstab in one process (devtmpfs may already be mounted).
mount -a 2>/dev/null
if ! [ -c /dev/console ] || ! [ -e /proc/self ]; then
	echo "init: mounting file systems failed" >/dev/console 2>/dev/null
fi
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1

cmdline=
read -r cmdline </proc/cmdline
checks=
end=reboot
for word in $cmdline; do
	case "$word" in
	kindling.check=*) checks="$checks ${word#kindling.check=}" ;;
	kindling.end=*) end=${word#kindling.end=} ;;
	esac
done

failures=
fail() { failures="$failures $*"; echo "init: check failed: $*"; }

# Sets cpu_count to the number of CPUs in a sysfs cpu list such as "0-1,3" (no subshell:
# a fork costs seconds here).
count_cpu_list() {
	local list="$1" part lo hi IFS=,
	cpu_count=0
	for part in $list; do
		case "$part" in
		*-*) lo=${part%-*} hi=${part#*-} cpu_count=$((cpu_count + hi - lo + 1)) ;;
		?*) cpu_count=$((cpu_count + 1)) ;;
		esac
	done
}

check_write_vdb() {
	local pattern=/etc/kindling/pattern.bin size
	[ -b /dev/vdb ] || { fail write-vdb:no-/dev/vdb; return; }
	read -r size </etc/kindling/pattern.size
	dd if=$pattern of=/dev/vdb bs=4096 conv=notrunc,fsync 2>/dev/null ||
		{ fail write-vdb:write-error; return; }
	sync
	# Read back with O_DIRECT: from the device, not from the page cache.
	if ! dd if=/dev/vdb bs=4096 count=$((size / 4096)) iflag=direct 2>/dev/null |
		cmp -s - $pattern; then
		fail write-vdb:read-back-differs
		return
	fi
	echo "init: write-vdb: wrote and read back $size bytes"
}

check_ro_vdb() {
	[ -b /dev/vdb ] || { fail ro-vdb:no-/dev/vdb; return; }
	if dd if=/etc/kindling/pattern.bin of=/dev/vdb bs=4096 count=1 conv=notrunc,fsync \
		2>/dev/null; then
		fail ro-vdb:write-succeeded
		return
	fi
	echo "init: ro-vdb: write refused as expected"
}

check_trim_vdb() {
	[ -b /dev/vdb ] || { fail trim-vdb:no-/dev/vdb; return; }
	mount -t ext4 /dev/vdb /mnt || { fail trim-vdb:mount; return; }
	rm /mnt/del.bin || fail trim-vdb:rm
	fstrim /mnt || fail trim-vdb:fstrim
	(cd /mnt && sha256sum -c -s keep.sha256) || fail trim-vdb:keep.bin-differs
	umount /mnt || fail trim-vdb:umount
	echo "init: trim-vdb: deleted, trimmed, keep.bin intact"
}

check_faults_vdb() {
	local pattern=/etc/kindling/pattern.bin d=/dev/vdb
	[ -b $d ] || { fail faults-vdb:no-/dev/vdb; return; }
	# O_DIRECT: one request per dd, straight to the device (no readahead, no page cache).
	dd if=$d of=/dev/null bs=4096 count=1 skip=255 iflag=direct 2>/dev/null ||
		{ fail faults-vdb:read-before-range; return; }
	if dd if=$d of=/dev/null bs=4096 count=1 skip=256 iflag=direct 2>/dev/null; then
		fail faults-vdb:eio-read-succeeded
		return
	fi
	if dd if=$pattern of=$d bs=4096 count=1 seek=256 oflag=direct conv=notrunc 2>/dev/null; then
		fail faults-vdb:eio-write-succeeded
		return
	fi
	if dd if=$d of=/dev/null bs=4096 count=1 skip=512 iflag=direct 2>/dev/null; then
		fail faults-vdb:short-read-succeeded
		return
	fi
	dd if=$pattern of=$d bs=4096 count=1 seek=257 oflag=direct conv=notrunc 2>/dev/null ||
		{ fail faults-vdb:write-after-range; return; }
	dd if=$d bs=4096 count=1 skip=257 iflag=direct 2>/dev/null | cmp -s -n 4096 - $pattern ||
		{ fail faults-vdb:read-back-differs; return; }
	echo "init: faults-vdb: I/O errors inside the failing sectors, the rest works"
}

check_cpus() {
	local want="$1" online=
	read -r online </sys/devices/system/cpu/online
	count_cpu_list "$online"
	if [ "$cpu_count" != "$want" ]; then
		fail "cpus=$want:online=$online"
		return
	fi
	echo "init: cpus: $cpu_count online ($online)"
}

# / must be mounted from vda: compare the root mount's device number (mountinfo) with
# /sys/block/vda/dev.
check_root_vda() {
	local vda="" id parent devno root mnt rest
	[ -r /sys/block/vda/dev ] && read -r vda </sys/block/vda/dev
	[ -n "$vda" ] || { fail root-vda:no-vda; return; }
	# shellcheck disable=SC2034 # mountinfo fields before the mount point
	while read -r id parent devno root mnt rest; do
		if [ "$mnt" = / ]; then
			[ "$devno" = "$vda" ] || { fail "root-vda:root-is-$devno"; return; }
			echo "init: root-vda: / is on vda ($vda)"
			return
		fi
	done </proc/self/mountinfo
	fail root-vda:no-root-mount
}

check_disks() {
	local want="$1" n=0 d
	for d in /sys/block/vd*; do
		[ -e "$d" ] && n=$((n + 1))
	done
	if [ "$n" != "$want" ]; then
		fail "disks=$want:found-$n"
		return
	fi
	echo "init: disks: $n virtio disks"
}

check_grow_vdb() {
	local want="$1" size tries=0
	read -r size </sys/block/vdb/size
	echo "init: grow-vdb: waiting for $want sectors (now $size)"
	while [ "$size" != "$want" ]; do
		tries=$((tries + 1))
		if [ "$tries" -gt 120 ]; then
			fail "grow-vdb=$want:still-$size"
			return
		fi
		sleep 1
		read -r size </sys/block/vdb/size
	done
	echo "init: grow-vdb: vdb now has $size sectors"
}

# The keyboard interrupts (IRQ 1, "i8042" in /proc/interrupts) taken so far.
# Ctrl-Alt-Del from the host (SendCtrlAltDel) arrives as scan codes through the i8042; the
# kernel's keyboard layer (CONFIG_VT) turns it into an immediate restart, which ends the VM
# before this check does: reaching its end means the keys never made the guest reboot.
check_wait_cad() {
	echo "init: wait-cad: waiting for Ctrl-Alt-Del"
	sleep 120
	fail "wait-cad:no-reboot-after-120s"
}

# /sys/firmware/acpi/tables/DSDT exists only when the kernel loaded kindling's ACPI tables.
check_acpi() {
	local want="$1" have=off
	[ -e /sys/firmware/acpi/tables/DSDT ] && have=on
	if [ "$have" != "$want" ]; then
		fail "acpi=$want:acpi-is-$have"
		return
	fi
	echo "init: acpi: $have"
}

# Interactive shell on the console with job control; poweroff/reboot/halt reset the VM
# (without ACPI a real power-off would only halt the CPU).
run_shell() {
	echo "kindling guest shell: 'poweroff' or 'reboot' (or exit) ends the VM"
	ENV=/etc/kindling/shrc setsid cttyhack sh -i
}

# kindling.end= says how the VM ends after the checks: reboot -f (with reboot=k, or through
# the FADT's reset register, kindling exits 0), poweroff -f (ACPI S5: kindling exits 0) or
# halt -f (the CPUs stop; kindling notices with --exit-on-halt).
end_vm() {
	sync
	case "$end" in
	poweroff) exec poweroff -f ;;
	halt) exec halt -f ;;
	*) exec reboot -f ;;
	esac
}

if [ -z "$checks" ]; then
	run_shell
	end_vm
fi

want_shell=
IFS=', '
# shellcheck disable=SC2086 # split on commas and blanks
set -- $checks
IFS=' 	
'
for check in "$@"; do
	case "$check" in
	write-vdb) check_write_vdb ;;
	ro-vdb) check_ro_vdb ;;
	trim-vdb) check_trim_vdb ;;
	faults-vdb) check_faults_vdb ;;
	cpus=*) check_cpus "${check#cpus=}" ;;
	root-vda) check_root_vda ;;
	disks=*) check_disks "${check#disks=}" ;;
	acpi=*) check_acpi "${check#acpi=}" ;;
	grow-vdb=*) check_grow_vdb "${check#grow-vdb=}" ;;
	wait-cad) check_wait_cad ;;
	shell) want_shell=1 ;;
	*) fail "unknown-check:$check" ;;
	esac
done

if [ -z "$failures" ]; then
	echo "KINDLING-VERDICT: PASS"
else
	echo "KINDLING-VERDICT: FAIL$failures"
fi
[ -n "$want_shell" ] && run_shell
end_vm
