//! Socket owners from the kernel itself: a BPF iterator over every task's
//! open files (`iter/task_file`, Linux 5.8+) that writes one record per
//! socket descriptor, instead of 20,000 `readlinkat` calls in `/proc`.
//!
//! The `/proc` walk ([`crate::procfs`]) costs a path lookup, two permission
//! checks and a formatted link per descriptor, about 3.5 µs each on a
//! 2-core VM: 70 ms of CPU for 20,000 sockets, however the work is shared.
//! The iterator visits the same descriptors inside the kernel for well under
//! a microsecond each and hands back only the sockets, as (inode, pid)
//! pairs. It is what `bpftool` uses to name the processes that hold BPF
//! objects.
//!
//! The program is 22 instructions, written here rather than compiled: it
//! reads `file->f_inode`, keeps files whose `i_mode` is a socket, and writes
//! `(inode->i_ino, task->tgid)` with `bpf_seq_write`. The field offsets come
//! from the running kernel's BTF ([`crate::btf`]), so the same instructions
//! load on any kernel whose structs moved, and the verifier checks every
//! access against the BTF before the program runs. The kernel iterates each
//! process's descriptor table once, not once per thread.
//!
//! It needs `CAP_BPF` and `CAP_PERFMON` (root has them), a kernel with BTF,
//! and pids that mean the same here as in `/proc`: `task->tgid` is the pid
//! in the initial pid namespace, so the iterator is used only there. When
//! any of these is missing, [`owners`] says why and the caller walks `/proc`.

use crate::btf::{Btf, BtfError, VMLINUX};
use crate::procfs::Seen;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// `task->tgid` is the pid in this namespace only in the initial one, whose
/// `/proc/self/ns/pid` inode is fixed (`PROC_PID_INIT_INO`).
const INIT_PID_NS_INODE: u64 = 0xEFFF_FFFC;

// From `include/uapi/linux/bpf.h`.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_ITER: u32 = 28;
const BPF_FUNC_SEQ_WRITE: i32 = 127;
/// The size of `union bpf_attr` in the headers this was written against;
/// the kernel accepts any size and requires unknown bytes to be zero.
const ATTR_SIZE: usize = 144;

/// Bytes the program writes per socket descriptor: inode (u64), pid (u32).
const RECORD: usize = 12;

/// Why the iterator cannot be used; the caller falls back to `/proc`.
#[derive(Debug)]
pub(crate) struct Unavailable(pub(crate) String);

impl From<BtfError> for Unavailable {
    fn from(e: BtfError) -> Unavailable {
        Unavailable(e.0)
    }
}

/// Every socket descriptor of every process, as (socket inode, pid), sorted,
/// each pair once.
pub(crate) fn owners() -> Result<Vec<Seen>, Unavailable> {
    let ns = rustix::fs::stat("/proc/self/ns/pid")
        .map_err(|e| Unavailable(format!("cannot read /proc/self/ns/pid: {e}")))?;
    if ns.st_ino != INIT_PID_NS_INODE {
        return Err(Unavailable(
            "not in the initial pid namespace: the kernel's pids are not this /proc's".into(),
        ));
    }
    let program = Program::from_kernel()?;
    let iterator = program.iterator()?;
    let mut seen = read_records(&iterator)?;
    seen.sort_unstable();
    seen.dedup();
    Ok(seen)
}

/// The field offsets and attach point the program is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// BTF id of `bpf_iter_task_file`, the iterator's attach point.
    attach_btf_id: u32,
    file_f_inode: u32,
    inode_i_mode: u32,
    inode_i_ino: u32,
    task_tgid: u32,
}

impl Layout {
    /// The running kernel's layout, read from its BTF once per process (a
    /// millisecond or two: `audit` and `explain` list sockets more than once).
    fn of_kernel() -> Result<Layout, Unavailable> {
        static LAYOUT: std::sync::OnceLock<Result<Layout, String>> = std::sync::OnceLock::new();
        LAYOUT
            .get_or_init(|| {
                let blob = KernelBtf::open().map_err(|e| e.0)?;
                let btf = Btf::parse(blob.bytes()).map_err(|e| e.0)?;
                Layout::from_btf(&btf).map_err(|e| e.0)
            })
            .clone()
            .map_err(Unavailable)
    }

    fn from_btf(btf: &Btf<'_>) -> Result<Layout, BtfError> {
        let layout = Layout {
            attach_btf_id: btf.func("bpf_iter_task_file")?,
            file_f_inode: btf.field_offset("file", "f_inode")?,
            inode_i_mode: btf.field_offset("inode", "i_mode")?,
            inode_i_ino: btf.field_offset("inode", "i_ino")?,
            task_tgid: btf.field_offset("task_struct", "tgid")?,
        };
        // A load's offset is a signed 16-bit field of the instruction.
        let offsets = [
            layout.file_f_inode,
            layout.inode_i_mode,
            layout.inode_i_ino,
            layout.task_tgid,
        ];
        if offsets.iter().any(|&o| o > i16::MAX as u32) {
            return Err(BtfError(format!(
                "a field lies beyond what one BPF load can reach: {offsets:?}"
            )));
        }
        Ok(layout)
    }
}

/// One BPF instruction, `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes used below (class | mode/op | size/source).
const LDX_DW: u8 = 0x79;
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const STX_DW: u8 = 0x7b;
const STX_W: u8 = 0x63;
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const AND64_K: u8 = 0x57;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;

const S_IFMT: i32 = 0o170000;
const S_IFSOCK: i32 = 0o140000;

/// The iterator program for `layout`. Its context is the attach point's
/// arguments, 8 bytes each: `meta` at 0, `task` at 8, `fd` at 16, `file`
/// at 24; `task` and `file` may be null.
fn instructions(layout: &Layout) -> Vec<Insn> {
    let off = |bytes: u32| bytes as i16;
    // Every early exit jumps to the last two instructions; each jump's
    // offset counts from the instruction after it, so it is computed once
    // the program's length is known.
    let mut program = vec![
        insn(MOV64_X, 6, 1, 0, 0),                       // r6 = ctx
        insn(LDX_DW, 7, 6, 24, 0),                       // r7 = ctx->file
        insn(JEQ_K, 7, 0, 0, 0),                         // no file: out
        insn(LDX_DW, 8, 6, 8, 0),                        // r8 = ctx->task
        insn(JEQ_K, 8, 0, 0, 0),                         // no task: out
        insn(LDX_DW, 2, 7, off(layout.file_f_inode), 0), // r2 = file->f_inode
        insn(JEQ_K, 2, 0, 0, 0),                         // no inode: out
        insn(LDX_H, 3, 2, off(layout.inode_i_mode), 0),  // r3 = inode->i_mode
        insn(AND64_K, 3, 0, 0, S_IFMT),                  // r3 &= S_IFMT
        insn(JNE_K, 3, 0, 0, S_IFSOCK),                  // not a socket: out
        insn(LDX_DW, 4, 2, off(layout.inode_i_ino), 0),  // r4 = inode->i_ino
        insn(STX_DW, 10, 4, -16, 0),                     // record.inode = r4
        insn(LDX_W, 5, 8, off(layout.task_tgid), 0),     // r5 = task->tgid
        insn(STX_W, 10, 5, -8, 0),                       // record.pid = r5
        insn(LDX_DW, 1, 6, 0, 0),                        // r1 = ctx->meta
        insn(LDX_DW, 1, 1, 0, 0),                        // r1 = meta->seq
        insn(MOV64_X, 2, 10, 0, 0),                      // r2 = &record
        insn(ADD64_K, 2, 0, 0, -16),
        insn(MOV64_K, 3, 0, 0, RECORD as i32), // r3 = sizeof record
        insn(CALL, 0, 0, 0, BPF_FUNC_SEQ_WRITE), // bpf_seq_write(seq, &record, 12)
        insn(MOV64_K, 0, 0, 0, 0),             // out: return 0
        insn(EXIT, 0, 0, 0, 0),
    ];
    let out = program.len() - 2;
    for (i, step) in program.iter_mut().enumerate() {
        if step.code == JEQ_K || step.code == JNE_K {
            step.off = (out - (i + 1)) as i16;
        }
    }
    program
}

/// The running kernel's BTF: mapped where the kernel allows it (recent
/// kernels do), which costs nothing, and read otherwise, which costs about
/// 10 ms (sysfs hands out its 5 MB a page per `read`).
enum KernelBtf {
    Mapped {
        addr: *mut std::ffi::c_void,
        len: usize,
    },
    Read(Vec<u8>),
}

impl KernelBtf {
    fn open() -> Result<KernelBtf, Unavailable> {
        let cannot = |e: &dyn std::fmt::Display| Unavailable(format!("cannot read {VMLINUX}: {e}"));
        let file = std::fs::File::open(VMLINUX).map_err(|e| cannot(&e))?;
        let len = file.metadata().map_err(|e| cannot(&e))?.len() as usize;
        // SAFETY: a new read-only private mapping of `len` bytes of the
        // file, which nothing else in this process refers to; it is unmapped
        // once, in `drop`.
        let mapped = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::PRIVATE,
                &file,
                0,
            )
        };
        match mapped {
            Ok(addr) if len > 0 => Ok(KernelBtf::Mapped { addr, len }),
            _ => {
                use std::io::Read;
                let mut data = Vec::with_capacity(len);
                (&file).read_to_end(&mut data).map_err(|e| cannot(&e))?;
                Ok(KernelBtf::Read(data))
            }
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: the mapping is `len` readable bytes and lives as long
            // as `self`.
            KernelBtf::Mapped { addr, len } => unsafe {
                std::slice::from_raw_parts(addr.cast::<u8>(), *len)
            },
            KernelBtf::Read(data) => data,
        }
    }
}

impl Drop for KernelBtf {
    fn drop(&mut self) {
        if let KernelBtf::Mapped { addr, len } = *self {
            // SAFETY: the mapping made in `open`, unmapped only here.
            let _ = unsafe { rustix::mm::munmap(addr, len) };
        }
    }
}

/// A loaded iterator program.
struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads the program built for the running kernel.
    fn from_kernel() -> Result<Program, Unavailable> {
        Program::load(&Layout::of_kernel()?)
    }

    fn load(layout: &Layout) -> Result<Program, Unavailable> {
        let program = instructions(layout);
        // The kernel lets only GPL-compatible programs call bpf_seq_write;
        // these instructions are offered under either licence.
        let license = c"Dual BSD/GPL";
        let mut log = vec![0u8; 64 * 1024];
        let mut attr = [0u8; ATTR_SIZE];
        put_u32(&mut attr, 0, BPF_PROG_TYPE_TRACING);
        put_u32(&mut attr, 4, program.len() as u32);
        put_u64(&mut attr, 8, program.as_ptr() as u64);
        put_u64(&mut attr, 16, license.as_ptr() as u64);
        put_u32(&mut attr, 24, 1); // log_level: the verifier's reason on failure
        put_u32(&mut attr, 28, log.len() as u32);
        put_u64(&mut attr, 32, log.as_mut_ptr() as u64);
        attr[48..48 + 15].copy_from_slice(b"portwall_owners");
        put_u32(&mut attr, 68, BPF_TRACE_ITER);
        put_u32(&mut attr, 108, layout.attach_btf_id);
        match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => Ok(Program { fd }),
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let reason = String::from_utf8_lossy(&log[..end]);
                // The verifier's last line says why it refused, if it did.
                let why = match reason.lines().rev().find(|l| !l.trim().is_empty()) {
                    Some(line) => format!(": {}", line.trim()),
                    None if e.raw_os_error() == Some(libc::EPERM) => {
                        " (loading it needs CAP_BPF and CAP_PERFMON, which root has)".into()
                    }
                    None => String::new(),
                };
                Err(Unavailable(format!(
                    "the kernel refused the socket-owner iterator: {e}{why}"
                )))
            }
        }
    }

    /// Attaches the program as an iterator and opens one pass over it.
    fn iterator(&self) -> Result<OwnedFd, Unavailable> {
        let mut attr = [0u8; ATTR_SIZE];
        put_u32(&mut attr, 0, raw(&self.fd));
        put_u32(&mut attr, 8, BPF_TRACE_ITER);
        let link = bpf(BPF_LINK_CREATE, &mut attr)
            .map_err(|e| Unavailable(format!("cannot attach the socket-owner iterator: {e}")))?;
        let mut attr = [0u8; ATTR_SIZE];
        put_u32(&mut attr, 0, raw(&link));
        bpf(BPF_ITER_CREATE, &mut attr)
            .map_err(|e| Unavailable(format!("cannot open the socket-owner iterator: {e}")))
    }
}

fn raw(fd: &OwnedFd) -> u32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd() as u32
}

/// Reads the iterator to its end and decodes its records.
fn read_records(iterator: &OwnedFd) -> Result<Vec<Seen>, Unavailable> {
    let mut bytes = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match rustix::io::read(iterator, &mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
            Err(e) => {
                return Err(Unavailable(format!(
                    "cannot read the socket-owner iterator: {e}"
                )))
            }
        }
    }
    if bytes.len() % RECORD != 0 {
        return Err(Unavailable(format!(
            "the socket-owner iterator returned {} bytes, not whole {RECORD}-byte records",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(RECORD)
        .map(|r| {
            let inode = u64::from_ne_bytes(r[..8].try_into().unwrap_or([0; 8]));
            let pid = u32::from_ne_bytes(r[8..].try_into().unwrap_or([0; 4]));
            (inode, pid)
        })
        .collect())
}

fn put_u32(attr: &mut [u8], at: usize, value: u32) {
    attr[at..at + 4].copy_from_slice(&value.to_ne_bytes());
}

fn put_u64(attr: &mut [u8], at: usize, value: u64) {
    attr[at..at + 8].copy_from_slice(&value.to_ne_bytes());
}

/// The `bpf(2)` system call; a new descriptor on success.
fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_SIZE]) -> Result<OwnedFd, std::io::Error> {
    // SAFETY: `attr` is a zeroed `union bpf_attr` of ATTR_SIZE bytes with
    // the fields of `cmd` filled in; every pointer in it (instructions,
    // licence, log buffer) outlives the call, which copies what it needs.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR_SIZE as u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success the call returned a new descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_early_exit_jumps_to_the_return() {
        let layout = Layout {
            attach_btf_id: 1,
            file_f_inode: 32,
            inode_i_mode: 0,
            inode_i_ino: 64,
            task_tgid: 2000,
        };
        let program = instructions(&layout);
        let out = program.len() - 2;
        for (i, step) in program.iter().enumerate() {
            if step.code == JEQ_K || step.code == JNE_K {
                assert_eq!(i + 1 + step.off as usize, out, "jump at {i}");
            }
        }
        assert_eq!(program[out], insn(MOV64_K, 0, 0, 0, 0));
        assert_eq!(program[out + 1].code, EXIT);
    }
}
