// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * The supervisor's forensics probe: who sent which signal to a supervised process, how it
 * exited, and whether the OOM killer chose it.
 *
 * Three BTF-enabled tracepoints (tp_btf: attached through bpf(2) alone, no tracefs needed):
 *   signal_generate    -> PROBE_KIND_SIGNAL  (sender, signal, si_code, delivery result)
 *   sched_process_exit -> PROBE_KIND_EXIT    (task->exit_code of the last thread)
 *   mark_victim        -> PROBE_KIND_OOM     (memory limit of the victim's memory cgroup)
 *
 * Every program first turns the target task into its pid in the supervisor's PID namespace and
 * checks whether it is watched (WATCH_BUCKETS, then WATCHED): a process the supervisor does not
 * watch costs a few loads (~8 ns). Pids are those of the supervisor's namespace (PIDNS_INUM, set
 * by the loader), because the classic tracepoints' host pids never match inside a container.
 *
 * Needs Linux >= 5.11 with BTF (tp_btf, ring buffer, bpf_get_current_task_btf).
 *
 * Kernel structs are declared here as minimal CO-RE views (preserve_access_index): the loader
 * relocates each field against /sys/kernel/btf/vmlinux, so no vmlinux.h is needed.
 *
 * Build: clang -O2 -g -target bpf -I/usr/include/$(arch)-linux-gnu -c probe.bpf.c (build.rs).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "probe.h"

#define SIGCHLD 17
#define SI_USER 0
#define SI_KERNEL 0x80
/* Pid namespace levels searched for the supervisor's (they nest at most 32 deep): a
 * supervisor in a namespace nested deeper than this would see no pids at all. */
#define MAX_NS_DEPTH 8
/* Memory cgroup ancestors inspected for the smallest limit. */
#define MAX_CGROUP_DEPTH 16

/* ---- CO-RE views of kernel structs: only the fields read below ---- */

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct pid_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct upid {
	int nr;
	struct pid_namespace *ns;
} __attribute__((preserve_access_index));

struct pid {
	unsigned int level;
	/* A flexible array in the kernel; sized here so that CO-RE accepts constant indexes. */
	struct upid numbers[MAX_NS_DEPTH];
} __attribute__((preserve_access_index));

typedef struct {
	int counter;
} atomic_t;

struct signal_struct {
	atomic_t live;
} __attribute__((preserve_access_index));

struct cgroup_subsys_state {
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup_subsys_state *subsys[1];
} __attribute__((preserve_access_index));

struct page_counter {
	unsigned long max;
	struct page_counter *parent;
} __attribute__((preserve_access_index));

struct mem_cgroup {
	struct cgroup_subsys_state css;
	struct page_counter memory;
} __attribute__((preserve_access_index));

enum cgroup_subsys_id {
	memory_cgrp_id = 4, /* the value is relocated; this one is only a placeholder */
};

struct task_struct {
	int exit_code;
	struct pid *thread_pid;
	struct task_struct *group_leader;
	struct task_struct *real_parent;
	struct signal_struct *signal;
	struct css_set *cgroups;
	char comm[16];
} __attribute__((preserve_access_index));

struct kernel_siginfo;

/* ---- maps and the loader's settings ---- */

/* Records for the supervisor: room for ~2,500 (96 bytes + an 8-byte header each). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} EVENTS SEC(".maps");

/* Pids (in the supervisor's namespace) of the processes it supervises; the value is unused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u32);
} WATCHED SEC(".maps");

/* How many WATCHED pids fall into each bucket (pid % PROBE_WATCH_BUCKETS), kept by the loader
 * together with WATCHED. An array lookup is inlined by the verifier and costs a few
 * instructions, a hash lookup ~30 ns: the bucket answers "not watched" for almost every
 * process on the machine, and only the rest pay for the hash. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROBE_WATCH_BUCKETS);
	__type(key, __u32);
	__type(value, __u32);
} WATCH_BUCKETS SEC(".maps");

/* Records dropped because the ring buffer was full: counted, never silently lost. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} LOST SEC(".maps");

/* Inode number of the supervisor's PID namespace (/proc/self/ns/pid), set before loading. */
const volatile __u32 PIDNS_INUM = 0;

/* Not used by the code: puts struct probe_event into the object's BTF (locals do not get
 * there), where the layout test of src/lib.rs compares it with the Rust mirror. */
const struct probe_event *const probe_event_btf = 0;

/* ---- helpers ---- */

/* The number of @p in the supervisor's PID namespace, 0 if it is not visible there.
 *
 * This runs for every signal and exit on the machine, so it reads through BTF pointers
 * directly (plain loads the verifier guards) rather than with bpf_probe_read_kernel() calls,
 * which cost several times more. @p must come from a BTF pointer (a tp_btf argument or
 * bpf_get_current_task_btf()). Namespaces nest: ours is at some level <= p->level, and the
 * unrolled scan uses constant indexes, as direct access needs. */
static __always_inline __u32 pid_nr_in_ns(struct pid *p)
{
	if (!p)
		return 0;
	unsigned int level = p->level;
#pragma unroll
	for (int i = 0; i < MAX_NS_DEPTH; i++) {
		if (i > level)
			break;
		struct pid_namespace *ns = p->numbers[i].ns;
		if (ns && ns->ns.inum == PIDNS_INUM)
			return p->numbers[i].nr;
	}
	return 0;
}

/* The process (thread group) id of @task in the supervisor's namespace. */
static __always_inline __u32 process_nr(struct task_struct *task)
{
	return pid_nr_in_ns(task->group_leader->thread_pid);
}

static __always_inline int watched(__u32 pid)
{
	if (!pid)
		return 0;
	__u32 bucket = pid % PROBE_WATCH_BUCKETS;
	__u32 *in_bucket = bpf_map_lookup_elem(&WATCH_BUCKETS, &bucket);
	if (!in_bucket || !*in_bucket)
		return 0;
	return bpf_map_lookup_elem(&WATCHED, &pid) != NULL;
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&LOST, &zero);
	if (n)
		*n += 1; /* per-CPU slot: no atomics needed */
}

static __always_inline struct probe_event *new_event(__u32 kind, __u32 pid)
{
	struct probe_event *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ktime_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->target_pid = pid;
	return e;
}

/* The current task is the sender. For kernel-generated signals (SI_KERNEL, timers) it is
 * whatever task ran at the time, and the loader says "kernel" instead. */
static __always_inline void fill_sender(struct probe_event *e)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	e->sender_pid = process_nr(cur);
	e->sender_tid = e->sender_pid ? pid_nr_in_ns(cur->thread_pid) : 0;
	e->sender_outside_ns = e->sender_pid == 0;
	e->sender_uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(e->sender_comm, sizeof(e->sender_comm));
	struct task_struct *parent = cur->real_parent->group_leader;
	e->sender_ppid = process_nr(parent);
	BPF_CORE_READ_STR_INTO(&e->sender_parent_comm, parent, comm);
}

/* si_code as the signal_generate tracepoint itself reports it (TP_STORE_SIGINFO): @info may
 * be SEND_SIG_NOINFO (0) or SEND_SIG_PRIV (1) instead of a pointer. */
static __always_inline int si_code(struct kernel_siginfo *info)
{
	if ((unsigned long)info == 0)
		return SI_USER;
	if ((unsigned long)info == 1)
		return SI_KERNEL;
	int code = 0;
	/* si_signo, si_errno, si_code: offset 8 is userspace ABI. */
	bpf_probe_read_kernel(&code, sizeof(code), (void *)info + 8);
	return code;
}

/* The smallest limit, in pages, of @task's memory cgroup and its ancestors (0: unknown). */
static __always_inline __u64 memory_limit_pages(struct task_struct *task)
{
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return 0;
	int id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state *css = NULL;
	if (!cset || bpf_core_read(&css, sizeof(css), &cset->subsys[id]) || !css)
		return 0;
	/* container_of(css, struct mem_cgroup, css) */
	struct mem_cgroup *memcg = (void *)css - bpf_core_field_offset(struct mem_cgroup, css);
	struct page_counter *pc = (void *)memcg + bpf_core_field_offset(struct mem_cgroup, memory);
	__u64 limit = 0;
	for (int i = 0; i < MAX_CGROUP_DEPTH && pc; i++) {
		__u64 max = BPF_CORE_READ(pc, max);
		if (!limit || max < limit)
			limit = max;
		pc = BPF_CORE_READ(pc, parent);
	}
	return limit;
}

/* ---- programs ---- */

SEC("tp_btf/signal_generate")
int BPF_PROG(sig_generate, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	__u32 pid = process_nr(task);
	if (!watched(pid))
		return 0;
	int code = si_code(info);
	/* A supervised process's own children report to it with SIGCHLD (CLD_* codes > 0):
	 * that is routine, and never why it died. A SIGCHLD someone sends by hand stays. */
	if (sig == SIGCHLD && code > 0)
		return 0;
	struct probe_event *e = new_event(PROBE_KIND_SIGNAL, pid);
	if (!e)
		return 0;
	e->target_tid = pid_nr_in_ns(task->thread_pid);
	e->signo = sig;
	e->code = code;
	e->result = result;
	fill_sender(e);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Fires for every exiting thread (as current). do_exit() decrements signal->live before the
 * tracepoint, so 0 means this is the last thread: the process is gone. (The tracepoint's own
 * group_dead argument exists only on recent kernels.) */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(proc_exit, struct task_struct *task)
{
	if (task->signal->live.counter != 0)
		return 0;
	__u32 pid = process_nr(task);
	if (!watched(pid))
		return 0;
	struct probe_event *e = new_event(PROBE_KIND_EXIT, pid);
	if (!e)
		return 0;
	e->target_tid = pid_nr_in_ns(task->thread_pid);
	e->exit_code = task->exit_code;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* The OOM killer has sent SIGKILL to @task and marks it as its victim. */
SEC("tp_btf/mark_victim")
int BPF_PROG(oom_victim, struct task_struct *task)
{
	__u32 pid = process_nr(task);
	if (!watched(pid))
		return 0;
	struct probe_event *e = new_event(PROBE_KIND_OOM, pid);
	if (!e)
		return 0;
	e->target_tid = pid_nr_in_ns(task->thread_pid);
	e->signo = 9;
	e->memory_limit_pages = memory_limit_pages(task);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* The helpers used (probe_read_kernel, get_current_task) require a GPL-compatible license. */
char LICENSE[] SEC("license") = "GPL";
