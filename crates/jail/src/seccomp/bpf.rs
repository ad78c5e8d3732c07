//! A small classic-BPF generator for the sandbox's one seccomp filter.
//!
//! The allowlist is turned into sorted ranges of system-call numbers and searched as a
//! balanced binary tree, so a filter of ~300 allowed calls is ~150 instructions and any call is
//! decided in about eight comparisons. (A linear chain, as general-purpose generators emit, is
//! ten times longer: the kernel validates and JIT-compiles it at every sandbox start, and runs
//! it on every system call of the payload.)
//!
//! Layout: check the architecture (kill on mismatch: a 32-bit call is numbered from another
//! table), load the number, refuse x32 numbers, answer the special calls (`clone3` and the
//! argument-checked ones), then the range search.

/// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_low(arg: u8) -> u32 {
    // args[] starts at 16; on little-endian targets the low 32 bits come first.
    16 + 8 * arg as u32
}

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// Bit that marks an x32 system-call number on x86_64.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A check on the arguments of one allowed system call. Arguments are compared as their low
/// 32 bits, which is what the kernel reads for every argument checked here (a 64-bit
/// comparison of an `int` argument can be bypassed, CVE-2019-7303).
#[derive(Debug, Clone, Copy)]
pub(super) enum ArgRule {
    /// Allowed when none of `mask`'s bits is set in argument `arg`.
    NoBits {
        /// Argument index.
        arg: u8,
        /// Forbidden bits.
        mask: u32,
    },
    /// Allowed unless argument `arg` is one of `values`.
    Except {
        /// Argument index.
        arg: u8,
        /// Refused values.
        values: &'static [u32],
    },
    /// Allowed only when argument `arg` is one of `values`.
    Only {
        /// Argument index.
        arg: u8,
        /// Allowed values.
        values: &'static [u32],
    },
    /// `socket`/`socketpair`: domain (argument 0) other than the `refused` ones, or
    /// `netlink` (argument 0) with protocol (argument 2) `netlink_protocol`.
    SocketDomain {
        /// Refused domains.
        refused: &'static [u32],
        /// The netlink domain, allowed only with one protocol.
        netlink: u32,
        /// That protocol.
        netlink_protocol: u32,
    },
}

/// What the filter answers for one special system call.
#[derive(Debug, Clone, Copy)]
pub(super) enum Special {
    /// Fail with this errno whatever the arguments.
    Errno(u32),
    /// Allowed when the rule passes, `EPERM` otherwise.
    Checked(ArgRule),
}

/// The policy the generator needs.
pub(super) struct Policy<'a> {
    /// `AUDIT_ARCH_*` of the native ABI.
    pub audit_arch: u32,
    /// Whether to refuse x32 numbers (x86_64 only).
    pub refuse_x32: bool,
    /// System calls allowed without conditions.
    pub allowed: &'a [u32],
    /// System calls with their own answer.
    pub special: &'a [(u32, Special)],
    /// Errno for everything else.
    pub default_errno: u32,
}

/// A program under construction. Jumps are resolved to labels when it is finished.
#[derive(Default)]
struct Asm {
    code: Vec<Insn>,
    labels: Vec<Option<usize>>,
}

#[derive(Clone, Copy)]
enum Insn {
    LoadAbs(u32),
    /// if A op k then goto t else goto f (labels).
    Jump {
        op: u16,
        k: u32,
        t: usize,
        f: usize,
    },
    /// Unconditional jump: any distance.
    Always(usize),
    Ret(u32),
    Label(usize),
}

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const BPF_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, label: usize) {
        self.code.push(Insn::Label(label));
    }
    fn load(&mut self, offset: u32) {
        self.code.push(Insn::LoadAbs(offset));
    }
    fn jump(&mut self, op: u16, k: u32, t: usize, f: usize) {
        self.code.push(Insn::Jump { op, k, t, f });
    }
    fn ret(&mut self, value: u32) {
        self.code.push(Insn::Ret(value));
    }
    fn always(&mut self, target: usize) {
        self.code.push(Insn::Always(target));
    }

    /// Resolve labels to relative offsets. A conditional jump reaches at most 255
    /// instructions ahead; the layout keeps its targets near (checked here) and uses
    /// unconditional jumps for the far ones.
    fn finish(mut self) -> Result<Vec<libc::sock_filter>, String> {
        let mut pc = 0;
        for insn in &self.code {
            match insn {
                Insn::Label(l) => self.labels[*l] = Some(pc),
                _ => pc += 1,
            }
        }
        let mut out = Vec::with_capacity(pc);
        for insn in &self.code {
            let here = out.len();
            let distance = |label: usize| -> Result<usize, String> {
                let target = self.labels[label].ok_or("unbound label")?;
                target.checked_sub(here + 1).ok_or_else(|| "backward jump".to_string())
            };
            let rel = |label: usize| -> Result<u8, String> {
                let d = distance(label)?;
                u8::try_from(d).map_err(|_| format!("conditional jump of {d} instructions"))
            };
            let insn = match *insn {
                Insn::Label(_) => continue,
                Insn::Always(t) => {
                    let k = u32::try_from(distance(t)?).map_err(|_| "jump too long".to_string())?;
                    libc::sock_filter { code: BPF_JA, jt: 0, jf: 0, k }
                }
                Insn::LoadAbs(k) => libc::sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k },
                Insn::Ret(k) => libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k },
                Insn::Jump { op, k, t, f } => libc::sock_filter { code: op, jt: rel(t)?, jf: rel(f)?, k },
            };
            out.push(insn);
        }
        Ok(out)
    }
}

/// Sorted, merged ranges `[lo, hi]` of allowed numbers.
fn ranges(allowed: &[u32]) -> Vec<(u32, u32)> {
    let mut sorted = allowed.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u32, u32)> = Vec::new();
    for nr in sorted {
        match out.last_mut() {
            Some((_, hi)) if *hi + 1 == nr => *hi = nr,
            _ => out.push((nr, nr)),
        }
    }
    out
}

/// Emit a binary search over `ranges` (A holds the number): ALLOW inside one, `deny`
/// outside. Each node tests `A >= first number of the right half` and jumps over the left
/// half with an unconditional jump, so no conditional jump goes far.
fn search(asm: &mut Asm, ranges: &[(u32, u32)], deny: u32) {
    match ranges {
        [] => asm.ret(deny),
        [(lo, hi)] => {
            // lo <= A <= hi  <=>  A >= lo && !(A >= hi + 1)
            let (check_hi, done) = (asm.label(), asm.label());
            asm.jump(BPF_JGE_K, *lo, check_hi, done);
            asm.bind(check_hi);
            let (allow_at, deny_at) = (asm.label(), asm.label());
            asm.jump(BPF_JGE_K, hi.saturating_add(1), deny_at, allow_at);
            asm.bind(done);
            asm.bind(deny_at);
            asm.ret(deny);
            asm.bind(allow_at);
            asm.ret(RET_ALLOW);
        }
        _ => {
            let (left, right) = ranges.split_at(ranges.len() / 2);
            let (far, near, right_at) = (asm.label(), asm.label(), asm.label());
            asm.jump(BPF_JGE_K, right[0].0, far, near);
            asm.bind(far);
            asm.always(right_at);
            asm.bind(near);
            search(asm, left, deny);
            asm.bind(right_at);
            search(asm, right, deny);
        }
    }
}

/// Jump to `hit` when A is one of `values`, else to `miss`.
fn any_of(asm: &mut Asm, values: &[u32], hit: usize, miss: usize) {
    for &v in values {
        let next = asm.label();
        asm.jump(BPF_JEQ_K, v, hit, next);
        asm.bind(next);
    }
    asm.always(miss);
}

/// Emit the check of one argument rule (A is clobbered) followed by its own returns.
fn arg_rule(asm: &mut Asm, rule: ArgRule, deny_ret: u32) {
    let (allow, deny) = (asm.label(), asm.label());
    match rule {
        ArgRule::NoBits { arg, mask } => {
            asm.load(off_arg_low(arg));
            asm.jump(BPF_JSET_K, mask, deny, allow);
        }
        ArgRule::Except { arg, values } => {
            asm.load(off_arg_low(arg));
            any_of(asm, values, deny, allow);
        }
        ArgRule::Only { arg, values } => {
            asm.load(off_arg_low(arg));
            any_of(asm, values, allow, deny);
        }
        ArgRule::SocketDomain { refused, netlink, netlink_protocol } => {
            asm.load(off_arg_low(0));
            let not_refused = asm.label();
            any_of(asm, refused, deny, not_refused);
            asm.bind(not_refused);
            let is_netlink = asm.label();
            asm.jump(BPF_JEQ_K, netlink, is_netlink, allow);
            asm.bind(is_netlink);
            asm.load(off_arg_low(2));
            asm.jump(BPF_JEQ_K, netlink_protocol, allow, deny);
        }
    }
    asm.bind(allow);
    asm.ret(RET_ALLOW);
    asm.bind(deny);
    asm.ret(deny_ret);
}

/// Generate the filter for `policy`.
pub(super) fn generate(policy: &Policy) -> Result<Vec<libc::sock_filter>, String> {
    let mut asm = Asm::default();
    let deny = RET_ERRNO | (policy.default_errno & 0xffff);
    let (arch_ok, kill) = (asm.label(), asm.label());
    asm.load(OFF_ARCH);
    asm.jump(BPF_JEQ_K, policy.audit_arch, arch_ok, kill);
    asm.bind(kill);
    asm.ret(RET_KILL_PROCESS);
    asm.bind(arch_ok);
    asm.load(OFF_NR);
    if policy.refuse_x32 {
        let (x32, native) = (asm.label(), asm.label());
        asm.jump(BPF_JGE_K, X32_SYSCALL_BIT, x32, native);
        asm.bind(x32);
        asm.ret(deny);
        asm.bind(native);
    }
    // Special calls: each test jumps over its own block when it does not match.
    for &(nr, special) in policy.special {
        let (block, next) = (asm.label(), asm.label());
        asm.jump(BPF_JEQ_K, nr, block, next);
        asm.bind(block);
        match special {
            Special::Errno(errno) => asm.ret(RET_ERRNO | (errno & 0xffff)),
            Special::Checked(rule) => arg_rule(&mut asm, rule, deny),
        }
        asm.bind(next);
    }
    search(&mut asm, &ranges(policy.allowed), deny);
    asm.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_neighbours() {
        assert_eq!(ranges(&[5, 1, 2, 3, 9, 10, 3]), vec![(1, 3), (5, 5), (9, 10)]);
    }

    /// Interpret a generated program for one (arch, nr, args) input, as the kernel would.
    fn eval(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u32; 6]) -> u32 {
        let mut a = 0u32;
        let mut pc = 0;
        loop {
            let i = prog[pc];
            match i.code {
                BPF_LD_W_ABS => {
                    a = match i.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        k => args[((k - 16) / 8) as usize],
                    };
                    pc += 1;
                }
                BPF_RET_K => return i.k,
                BPF_JA => pc += 1 + i.k as usize,
                op => {
                    let hit = match op {
                        BPF_JEQ_K => a == i.k,
                        BPF_JGE_K => a >= i.k,
                        BPF_JSET_K => a & i.k != 0,
                        _ => panic!("unknown opcode {op:#x}"),
                    };
                    pc += 1 + usize::from(if hit { i.jt } else { i.jf });
                }
            }
        }
    }

    #[test]
    fn the_search_tree_allows_exactly_the_allowlist() {
        let allowed: Vec<u32> = (0..460).filter(|n| n % 3 != 0 || n % 7 == 0).collect();
        let special = [
            (1000, Special::Errno(libc::ENOSYS as u32)),
            (1001, Special::Checked(ArgRule::NoBits { arg: 0, mask: 0x10 })),
        ];
        let policy = Policy {
            audit_arch: 7,
            refuse_x32: true,
            allowed: &allowed,
            special: &special,
            default_errno: 1,
        };
        let prog = generate(&policy).unwrap();
        for nr in 0..1100 {
            let want = if allowed.contains(&nr) { RET_ALLOW } else { RET_ERRNO | 1 };
            let want = match nr {
                1000 => RET_ERRNO | libc::ENOSYS as u32,
                1001 => RET_ALLOW,
                _ => want,
            };
            assert_eq!(eval(&prog, 7, nr, [0; 6]), want, "nr {nr}");
        }
        assert_eq!(eval(&prog, 7, 1001, [0x30, 0, 0, 0, 0, 0]), RET_ERRNO | 1);
        assert_eq!(eval(&prog, 7, 1 | X32_SYSCALL_BIT, [0; 6]), RET_ERRNO | 1);
        assert_eq!(eval(&prog, 8, 1, [0; 6]), RET_KILL_PROCESS);
    }
}
