/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/*
 * The one record the probe sends to the supervisor through the ring buffer.
 *
 * This header is the source of truth; `RawEvent` in src/lib.rs mirrors it, and a test there
 * compares the two through the BTF that clang writes into the object (names, offsets, size).
 * Rules that keep both sides honest: fixed-width fields only, widest first, no implicit padding,
 * `__u32` instead of `bool`.
 */
#ifndef SUPERVISOR_PROBE_H
#define SUPERVISOR_PROBE_H

#include <linux/types.h>

/* probe_event.kind */
#define PROBE_KIND_SIGNAL 1 /* signal_generate: a signal was generated for a watched process */
#define PROBE_KIND_EXIT 2   /* sched_process_exit: the last thread of a watched process exited */
#define PROBE_KIND_OOM 3    /* mark_victim: the OOM killer chose a watched process */
#define PROBE_KIND_LOST 4   /* records this CPU could not queue since its last LOST record */

/* Repeats of one signal (same sender process, target, signal and si_code) within this window
 * of the first are folded into a count instead of a record each (PROBE_KIND_SIGNAL records
 * with count > 1 carry the folded repeats). */
#define PROBE_FOLD_WINDOW_NS 1000000000ULL
/* Descendants followed per program (its process tree, the program's own process excluded). */
#define PROBE_MAX_TREE 1024

/* Size of the WATCH_BUCKETS prefilter (a power of two: the modulo is a mask). */
#define PROBE_WATCH_BUCKETS 4096

struct probe_event {
	/* bpf_ktime_get_ns(): CLOCK_MONOTONIC, converted to wall time by the loader. */
	__u64 ktime_ns;
	/* OOM: the smallest memory limit (in pages) of the victim's memory cgroup and its
	 * ancestors; 0 when unreadable. The kernel's "no limit" is a huge value. */
	__u64 memory_limit_pages;
	/* SIGNAL: how many identical signals this record stands for (1, or the repeats folded
	 * since the previous record of the same signal); LOST: records this CPU lost. */
	__u64 count;
	__u32 kind;
	/* The target (a watched process: a program's own, or one of its descendants): tgid and tid
	 * in the supervisor's PID namespace. */
	__u32 target_pid;
	__u32 target_tid;
	/* The program's own process the target belongs to (== target_pid for that process). */
	__u32 root_pid;
	/* The loader's tag for that process (tells a reused pid from the one it watched). */
	__u32 tag;
	/* The target's parent process, in the supervisor's PID namespace. */
	__u32 target_ppid;
	__u32 reserved;
	__s32 signo;
	/* si_code: SI_USER, SI_KERNEL, SI_QUEUE, SI_TKILL, SI_TIMER, a fault code... */
	__s32 code;
	/* TRACE_SIGNAL_*: 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 lose info. */
	__s32 result;
	/* EXIT: task->exit_code, a wait(2) status (exit status << 8, or signal | 0x80 core). */
	__s32 exit_code;
	/* The sender (current task): tgid, tid and parent tgid in the supervisor's PID namespace,
	 * each 0 when not visible there. */
	__u32 sender_pid;
	__u32 sender_tid;
	__u32 sender_ppid;
	/* Real uid (in the initial user namespace), from bpf_get_current_uid_gid(). */
	__u32 sender_uid;
	/* 1 when the sender's process is not visible in the supervisor's PID namespace. */
	__u32 sender_outside_ns;
	char sender_comm[16];
	char sender_parent_comm[16];
	/* The target's command name (descendants are named by it). */
	char target_comm[16];
};

#endif
