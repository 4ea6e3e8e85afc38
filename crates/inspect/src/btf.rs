//! The few facts about the running kernel that the socket-owner iterator
//! ([`crate::task_files`]) needs, read from its BTF (`/sys/kernel/btf/vmlinux`):
//! the type id of the iterator's attach point and the byte offsets of four
//! struct fields.
//!
//! The BTF of a kernel is about 5 MB and 150,000 types. General BTF crates
//! parse all of it into typed values (tens of milliseconds), which would cost
//! more than the listing it serves; this reader only measures each record to
//! step over it, remembers where each type starts, and compares the names of
//! the few structs and functions asked for. The format is the kernel's
//! `Documentation/bpf/btf.rst`: a header, then the type section (records of
//! a 12-byte `btf_type` followed by kind-specific data), then the string
//! section, all in the machine's byte order.

use std::fmt;

/// Where the running kernel publishes its BTF.
pub(crate) const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;

// Kinds (`BTF_KIND_*`) that this reader must tell apart.
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;
/// The highest kind this reader knows how to step over.
const KIND_MAX: u32 = 19;

/// Why the BTF could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BtfError(pub(crate) String);

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn error(message: impl Into<String>) -> BtfError {
    BtfError(message.into())
}

/// A parsed view of one BTF blob: the start of every type record, by id.
#[derive(Debug)]
pub(crate) struct Btf<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// `starts[id - 1]` is the offset in `types` of the record of type `id`.
    starts: Vec<u32>,
}

impl<'a> Btf<'a> {
    /// Checks the header and indexes the type records of `data`.
    pub(crate) fn parse(data: &'a [u8]) -> Result<Btf<'a>, BtfError> {
        let u32_at = |at: usize| -> Result<u32, BtfError> {
            data.get(at..at + 4)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| error("BTF header is truncated"))
        };
        if data.len() < 24 || u16::from_ne_bytes([data[0], data[1]]) != MAGIC {
            return Err(error("not BTF (bad magic)"));
        }
        let header_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let section = |off: usize, len: usize| {
            let start = header_len.checked_add(off)?;
            data.get(start..start.checked_add(len)?)
        };
        let types = section(type_off, type_len)
            .ok_or_else(|| error("BTF type section is out of bounds"))?;
        let strings = section(str_off, str_len)
            .ok_or_else(|| error("BTF string section is out of bounds"))?;
        let mut starts = Vec::with_capacity(types.len() / 24);
        let mut at = 0usize;
        while at < types.len() {
            let info =
                read_u32(types, at + 4).ok_or_else(|| error("BTF type record is truncated"))?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                k if k <= KIND_MAX => 0,
                k => {
                    return Err(error(format!(
                        "BTF type kind {k} is not known to this reader"
                    )))
                }
            };
            starts.push(at as u32);
            at += 12 + extra;
        }
        if at != types.len() {
            return Err(error("BTF type section ends inside a record"));
        }
        Ok(Btf {
            types,
            strings,
            starts,
        })
    }

    fn name(&self, name_off: u32) -> &'a [u8] {
        let rest = self.strings.get(name_off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    /// (name offset, kind, vlen, kind flag) of type `id`, and where its
    /// kind-specific data starts.
    fn header(&self, id: u32) -> Option<(u32, u32, usize, bool, usize)> {
        let at = *self.starts.get((id as usize).checked_sub(1)?)? as usize;
        let name_off = read_u32(self.types, at)?;
        let info = read_u32(self.types, at + 4)?;
        Some((
            name_off,
            (info >> 24) & 0x1f,
            (info & 0xffff) as usize,
            info >> 31 == 1,
            at + 12,
        ))
    }

    /// The id of the first type of `kind` named `name`.
    fn find(&self, kind: u32, name: &str) -> Option<u32> {
        (1..=self.starts.len() as u32).find(|&id| {
            self.header(id).is_some_and(|(name_off, k, vlen, _, _)| {
                k == kind
                    && (kind != KIND_STRUCT || vlen > 0)
                    && self.name(name_off) == name.as_bytes()
            })
        })
    }

    /// The type id of the function `name` (`BTF_KIND_FUNC`).
    pub(crate) fn func(&self, name: &str) -> Result<u32, BtfError> {
        self.find(KIND_FUNC, name)
            .ok_or_else(|| error(format!("the kernel's BTF has no function {name}")))
    }

    /// The byte offset of the field `field` in `struct name`, looking
    /// through anonymous structs and unions.
    pub(crate) fn field_offset(&self, name: &str, field: &str) -> Result<u32, BtfError> {
        let id = self
            .find(KIND_STRUCT, name)
            .ok_or_else(|| error(format!("the kernel's BTF has no struct {name}")))?;
        self.member_bits(id, field, 0)
            .filter(|bits| bits % 8 == 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| error(format!("the kernel's struct {name} has no field {field}")))
    }

    /// The bit offset of `field` in the struct or union `id` (itself at
    /// `base` bits), searching anonymous members depth first.
    fn member_bits(&self, id: u32, field: &str, base: u32) -> Option<u32> {
        let (_, kind, vlen, kind_flag, data) = self.header(id)?;
        if kind != KIND_STRUCT && kind != KIND_UNION {
            return None;
        }
        for i in 0..vlen {
            let at = data + 12 * i;
            let (name_off, member_type, offset) = (
                read_u32(self.types, at)?,
                read_u32(self.types, at + 4)?,
                read_u32(self.types, at + 8)?,
            );
            // With the kind flag, the top byte holds a bitfield's size.
            let bits = base
                + if kind_flag {
                    offset & 0x00ff_ffff
                } else {
                    offset
                };
            if name_off == 0 {
                if let Some(found) = self.member_bits(self.resolve(member_type), field, bits) {
                    return Some(found);
                }
            } else if self.name(name_off) == field.as_bytes() {
                return Some(bits);
            }
        }
        None
    }

    /// `id` with typedefs and qualifiers (const, volatile, restrict, type
    /// tags) taken away: what an anonymous member really is.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.header(id) {
                Some((_, 8..=11 | 18, _, _, data)) => {
                    // The type these refer to is in the size/type word.
                    match read_u32(self.types, data - 4) {
                        Some(next) => id = next,
                        None => return id,
                    }
                }
                _ => return id,
            }
        }
        id
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob from type records and a string section.
    fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        for word in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        out.extend_from_slice(types);
        out.extend_from_slice(strings);
        out
    }

    fn words(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn finds_functions_and_fields_through_anonymous_unions() {
        // Strings: 0 "", 1 "int", 5 "outer", 11 "a", 13 "b", 15 "f".
        let strings = b"\0int\0outer\0a\0b\0f\0";
        let types = words(&[
            // 1: int, 4 bytes.
            1,
            KIND_INT << 24,
            4,
            32,
            // 2: anonymous union { int b @ 0 }.
            0,
            (KIND_UNION << 24) | 1,
            4,
            13,
            1,
            0,
            // 3: struct outer { int a @ 0; union { b } @ 64 bits }.
            5,
            (KIND_STRUCT << 24) | 2,
            16,
            11,
            1,
            0,
            0,
            2,
            64,
            // 4: a function f.
            15,
            KIND_FUNC << 24,
            0,
        ]);
        let data = blob(&types, strings);
        let btf = Btf::parse(&data).expect("parse");
        assert_eq!(btf.func("f"), Ok(4));
        assert_eq!(btf.field_offset("outer", "a"), Ok(0));
        assert_eq!(btf.field_offset("outer", "b"), Ok(8));
        assert!(btf
            .field_offset("outer", "c")
            .unwrap_err()
            .0
            .contains("no field c"));
        assert!(btf.func("g").unwrap_err().0.contains("no function g"));
    }

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(Btf::parse(b"not btf at all, not at all").is_err());
        let mut data = blob(&words(&[1, KIND_INT << 24, 4]), b"\0");
        assert!(Btf::parse(&data).unwrap_err().0.contains("ends inside"));
        data[0] = 0;
        assert!(Btf::parse(&data).unwrap_err().0.contains("magic"));
    }

    #[test]
    fn reads_the_running_kernel() {
        let Ok(data) = std::fs::read(VMLINUX) else {
            eprintln!("skipped: this kernel publishes no BTF at {VMLINUX}");
            return;
        };
        let btf = Btf::parse(&data).expect("the kernel's BTF parses");
        assert!(btf.func("bpf_iter_task_file").is_ok());
        // Offsets the kernel has had for years on x86-64.
        assert_eq!(btf.field_offset("inode", "i_mode"), Ok(0));
        assert!(btf.field_offset("file", "f_inode").is_ok());
        assert!(btf.field_offset("task_struct", "tgid").is_ok());
    }
}
