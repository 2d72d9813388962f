// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * The supervisor's forensics probe: who sent which signal to a supervised process or to any
 * process of its tree, how it exited, and whether the OOM killer chose it.
 *
 * Four BTF-enabled tracepoints (tp_btf: attached through bpf(2) alone, no tracefs needed):
 *   signal_generate    -> PROBE_KIND_SIGNAL  (sender, signal, si_code, delivery result, count)
 *   sched_process_exit -> PROBE_KIND_EXIT    (task->exit_code of the last thread)
 *   mark_victim        -> PROBE_KIND_OOM     (memory limit of the victim's memory cgroup)
 *   sched_process_fork -> (no record)        a child of a watched process is watched too
 *
 * Watched processes come in two maps. WATCHED holds the programs' own processes (the roots),
 * written only by the loader: nothing a program does can evict them. DESCENDANTS holds the
 * processes they fork, at any depth, written only here (on fork, removed on exit), each tagged
 * with its root; at most PROBE_MAX_TREE per root (TREE_SIZE counts them), so a fork bomb in one
 * program fills its own share and no more. Forks past a cap, or past a full map, are not
 * followed and are counted (STATS[STAT_UNFOLLOWED]). Children of the supervisor itself are
 * followed from their first instruction (their root is themselves until the loader watches
 * them), so nothing a program forks right after exec is missed.
 *
 * Every program first turns the target task into its pid in the supervisor's PID namespace and
 * checks whether it is watched (a bucket array per map, then the hash): a process the supervisor
 * does not watch costs a few loads (~8 ns). Pids are those of the supervisor's namespace
 * (PIDNS_INUM, set by the loader), because the classic tracepoints' host pids never match inside
 * a container.
 *
 * Nothing is lost silently: a signal repeated by the same sender (same signal and si_code, to
 * the same target, within PROBE_FOLD_WINDOW_NS of the first) is folded into a count (FOLD),
 * emitted with the next different signal to that target, the next repeat after the window, or
 * its exit; a record the ring buffer cannot take is counted (STATS[STAT_LOST]) and reported by
 * a PROBE_KIND_LOST record as soon as there is room again.
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

/* Records for the supervisor: room for ~1,800 (136 bytes + an 8-byte header each). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} EVENTS SEC(".maps");

/* The programs' own processes (pids in the supervisor's namespace) -> the loader's tag for
 * each (never 0). Written by the loader only. */
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

/* A descendant's root (a WATCHED pid, or a child of the supervisor not watched yet) and the
 * root's tag when it was forked (0: look it up in WATCHED when needed). `seeded`: put there by
 * the loader, for a process forked before the probe was loaded; such an entry is counted in
 * WATCH_BUCKETS (the loader's), not in DESCENDANT_BUCKETS or TREE_SIZE. */
struct descendant {
	__u32 root;
	__u32 tag;
	__u32 seeded;
};

/* Descendants of the programs' processes, at any depth: written here only, but for the
 * `seeded` entries of the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct descendant);
} DESCENDANTS SEC(".maps");

/* WATCH_BUCKETS for DESCENDANTS (updated atomically here, never by the loader). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PROBE_WATCH_BUCKETS);
	__type(key, __u32);
	__type(value, __u32);
} DESCENDANT_BUCKETS SEC(".maps");

/* Root pid -> how many DESCENDANTS it has (removed when it drops to 0). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u32);
} TREE_SIZE SEC(".maps");

/* The last signal recorded for a target and the repeats folded into it since. */
struct fold {
	struct probe_event first; /* as recorded (count 1) */
	__u64 sender;             /* host tgid of its sender: the sender, wherever it runs */
	__u64 repeats;            /* identical signals since, not recorded yet */
	__u64 last_ns;            /* when the last repeat came */
};

/* Target pid -> its fold. Removed when the target exits. When full, signals to targets
 * without an entry are all recorded (nothing is folded, nothing lost). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct fold);
} FOLD SEC(".maps");

/* Per-CPU counters (STAT_*), read by the loader. */
#define STAT_LOST 0        /* signals and records the ring buffer could not take */
#define STAT_UNREPORTED 1  /* of those, not yet told by a PROBE_KIND_LOST record */
#define STAT_UNFOLLOWED 2  /* forks not followed (a tree at PROBE_MAX_TREE, or a full map) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} STATS SEC(".maps");

/* Inode number of the supervisor's PID namespace (/proc/self/ns/pid), set before loading. */
const volatile __u32 PIDNS_INUM = 0;
/* The supervisor's own pid in that namespace: its children are followed from their fork. */
const volatile __u32 SUPERVISOR_PID = 0;

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

/* @pid's tag when it is a program's own process (WATCHED), else NULL. */
static __always_inline __u32 *watched(__u32 pid)
{
	if (!pid)
		return NULL;
	__u32 bucket = pid % PROBE_WATCH_BUCKETS;
	__u32 *in_bucket = bpf_map_lookup_elem(&WATCH_BUCKETS, &bucket);
	if (!in_bucket || !*in_bucket)
		return NULL;
	return bpf_map_lookup_elem(&WATCHED, &pid);
}

/* @pid's entry when it is a descendant of one (DESCENDANTS), else NULL. */
static __always_inline struct descendant *descendant(__u32 pid)
{
	if (!pid)
		return NULL;
	__u32 bucket = pid % PROBE_WATCH_BUCKETS;
	__u32 *in_bucket = bpf_map_lookup_elem(&DESCENDANT_BUCKETS, &bucket);
	if (!in_bucket || !*in_bucket) {
		/* Seeded entries are counted in the loader's buckets. */
		in_bucket = bpf_map_lookup_elem(&WATCH_BUCKETS, &bucket);
		if (!in_bucket || !*in_bucket)
			return NULL;
	}
	return bpf_map_lookup_elem(&DESCENDANTS, &pid);
}

/* Whether @pid is watched (a program's process or one of its descendants): then its root
 * and the root's tag. A child of the supervisor that the loader does not watch is not. */
static __always_inline int lookup_target(__u32 pid, __u32 *root, __u32 *tag)
{
	__u32 *t = watched(pid);
	if (t) {
		*root = pid;
		*tag = *t;
		return 1;
	}
	struct descendant *d = descendant(pid);
	if (!d)
		return 0;
	*root = d->root;
	*tag = d->tag;
	if (*tag)
		return 1;
	t = watched(*root);
	if (!t)
		return 0;
	*tag = *t;
	return 1;
}

static __always_inline void stat_add(__u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&STATS, &key);
	if (v)
		*v += n; /* per-CPU slot: no atomics needed */
}

/* A ring-buffer slot. First, if this CPU lost records since it last said so, one
 * PROBE_KIND_LOST record tells how many. @weight is what a failure loses: 1 record, or the
 * signals a folded record stands for. */
static __always_inline struct probe_event *reserve(__u64 weight)
{
	__u32 key = STAT_UNREPORTED;
	__u64 *unreported = bpf_map_lookup_elem(&STATS, &key);
	if (unreported && *unreported) {
		struct probe_event *l = bpf_ringbuf_reserve(&EVENTS, sizeof(*l), 0);
		if (l) {
			__builtin_memset(l, 0, sizeof(*l));
			l->ktime_ns = bpf_ktime_get_ns();
			l->kind = PROBE_KIND_LOST;
			l->count = *unreported;
			*unreported = 0;
			bpf_ringbuf_submit(l, 0);
		}
	}
	struct probe_event *e = bpf_ringbuf_reserve(&EVENTS, sizeof(*e), 0);
	if (!e) {
		stat_add(STAT_LOST, weight);
		stat_add(STAT_UNREPORTED, weight);
	}
	return e;
}

static __always_inline struct probe_event *new_event(__u32 kind, __u32 pid, __u32 root,
						     __u32 tag)
{
	struct probe_event *e = reserve(1);
	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	e->ktime_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->count = 1;
	e->target_pid = pid;
	e->root_pid = root;
	e->tag = tag;
	return e;
}

/* Records the repeats folded into @f since its first signal, as one record. */
static __always_inline void flush(struct fold *f)
{
	__u64 n = f->repeats;
	if (!n)
		return;
	f->repeats = 0;
	struct probe_event *e = reserve(n);
	if (!e)
		return; /* counted as lost, all n of them */
	__builtin_memcpy(e, &f->first, sizeof(*e));
	e->count = n;
	e->ktime_ns = f->last_ns;
	bpf_ringbuf_submit(e, 0);
}

/* The target's parent and name, for naming descendants. */
static __always_inline void fill_target(struct probe_event *e, struct task_struct *task)
{
	e->target_tid = pid_nr_in_ns(task->thread_pid);
	e->target_ppid = process_nr(task->real_parent);
	BPF_CORE_READ_STR_INTO(&e->target_comm, task, comm);
}

/* @pid (a descendant of @root) is gone: forget it. A seeded entry is the loader's to count. */
static __always_inline void forget(__u32 pid, __u32 root, __u32 seeded)
{
	if (bpf_map_delete_elem(&DESCENDANTS, &pid) || seeded)
		return;
	__u32 bucket = pid % PROBE_WATCH_BUCKETS;
	__u32 *in_bucket = bpf_map_lookup_elem(&DESCENDANT_BUCKETS, &bucket);
	if (in_bucket)
		__sync_fetch_and_add(in_bucket, -1);
	__u32 *size = bpf_map_lookup_elem(&TREE_SIZE, &root);
	if (size) {
		__sync_fetch_and_add(size, -1);
		if (*size == 0 || *size > PROBE_MAX_TREE * 2)
			bpf_map_delete_elem(&TREE_SIZE, &root);
	}
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
	__u32 pid = process_nr(task), root = 0, tag = 0;
	if (!lookup_target(pid, &root, &tag))
		return 0;
	int code = si_code(info);
	/* A watched process's own children report to it with SIGCHLD (CLD_* codes > 0): that is
	 * routine, and never why it died. A SIGCHLD someone sends by hand stays. */
	if (sig == SIGCHLD && code > 0)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 sender = bpf_get_current_pid_tgid() >> 32;
	struct fold *f = bpf_map_lookup_elem(&FOLD, &pid);
	if (f) {
		if (f->sender == sender && f->first.signo == sig && f->first.code == code &&
		    f->first.tag == tag && now - f->first.ktime_ns < PROBE_FOLD_WINDOW_NS) {
			__sync_fetch_and_add(&f->repeats, 1);
			f->last_ns = now;
			return 0;
		}
		flush(f);
	}
	struct probe_event *e = new_event(PROBE_KIND_SIGNAL, pid, root, tag);
	if (!e)
		return 0;
	e->ktime_ns = now;
	e->signo = sig;
	e->code = code;
	e->result = result;
	fill_target(e, task);
	fill_sender(e);
	if (f) {
		__builtin_memcpy(&f->first, e, sizeof(*e));
		f->sender = sender;
		f->last_ns = now;
	} else {
		struct fold nf = {};
		__builtin_memcpy(&nf.first, e, sizeof(*e));
		nf.sender = sender;
		nf.last_ns = now;
		/* A full map only means this target's repeats are all recorded. */
		bpf_map_update_elem(&FOLD, &pid, &nf, BPF_NOEXIST);
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Fires for every exiting thread (as current). do_exit() decrements signal->live before the
 * tracepoint, so 0 means this is the last thread: the process is gone. (The tracepoint's own
 * group_dead argument exists only on recent kernels.) A program's process always gets a
 * record; a descendant only when a signal killed it. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(proc_exit, struct task_struct *task)
{
	if (task->signal->live.counter != 0)
		return 0;
	__u32 pid = process_nr(task);
	__u32 *t = watched(pid);
	struct descendant *d = descendant(pid);
	if (!t && !d)
		return 0;
	struct fold *f = bpf_map_lookup_elem(&FOLD, &pid);
	if (f) {
		flush(f);
		bpf_map_delete_elem(&FOLD, &pid);
	}
	__u32 root = pid, tag = t ? *t : 0;
	if (d) {
		__u32 droot = d->root, dtag = d->tag;
		forget(pid, droot, d->seeded);
		if (!t) {
			root = droot;
			tag = dtag;
			if (!tag) {
				__u32 *rt = watched(root);
				tag = rt ? *rt : 0;
			}
		}
	}
	int status = task->exit_code;
	if (!t && (!tag || !(status & 0x7f)))
		return 0;
	struct probe_event *e = new_event(PROBE_KIND_EXIT, pid, root, tag);
	if (!e)
		return 0;
	e->exit_code = status;
	fill_target(e, task);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* The OOM killer has sent SIGKILL to @task and marks it as its victim. */
SEC("tp_btf/mark_victim")
int BPF_PROG(oom_victim, struct task_struct *task)
{
	__u32 pid = process_nr(task), root = 0, tag = 0;
	if (!lookup_target(pid, &root, &tag))
		return 0;
	struct probe_event *e = new_event(PROBE_KIND_OOM, pid, root, tag);
	if (!e)
		return 0;
	e->signo = 9;
	e->memory_limit_pages = memory_limit_pages(task);
	fill_target(e, task);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* A new process (not a thread) whose parent is watched, or is the supervisor, is watched
 * too: it joins its parent's tree (or starts its own, for the supervisor's children), unless
 * that tree already has PROBE_MAX_TREE processes or DESCENDANTS is full. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(proc_fork, struct task_struct *parent, struct task_struct *child)
{
	if (child->group_leader != child)
		return 0;
	__u32 ppid = process_nr(parent);
	if (!ppid)
		return 0;
	struct descendant d = {};
	__u32 *t = watched(ppid);
	if (t) {
		d.root = ppid;
		d.tag = *t;
	} else {
		struct descendant *pd = descendant(ppid);
		if (pd) {
			d.root = pd->root;
			d.tag = pd->tag;
		} else if (ppid != SUPERVISOR_PID) {
			return 0;
		}
	}
	__u32 pid = process_nr(child);
	if (!pid)
		return 0;
	if (!d.root)
		d.root = pid; /* the supervisor's child: its own root until the loader watches it */
	__u32 *size = bpf_map_lookup_elem(&TREE_SIZE, &d.root);
	if (size && *size >= PROBE_MAX_TREE) {
		stat_add(STAT_UNFOLLOWED, 1);
		return 0;
	}
	if (bpf_map_update_elem(&DESCENDANTS, &pid, &d, BPF_NOEXIST)) {
		stat_add(STAT_UNFOLLOWED, 1);
		return 0;
	}
	if (size) {
		__sync_fetch_and_add(size, 1);
	} else {
		__u32 one = 1;
		if (bpf_map_update_elem(&TREE_SIZE, &d.root, &one, BPF_NOEXIST)) {
			size = bpf_map_lookup_elem(&TREE_SIZE, &d.root);
			if (size)
				__sync_fetch_and_add(size, 1);
		}
	}
	__u32 bucket = pid % PROBE_WATCH_BUCKETS;
	__u32 *in_bucket = bpf_map_lookup_elem(&DESCENDANT_BUCKETS, &bucket);
	if (in_bucket)
		__sync_fetch_and_add(in_bucket, 1);
	return 0;
}

/* The helpers used (probe_read_kernel, get_current_task) require a GPL-compatible license. */
char LICENSE[] SEC("license") = "GPL";
