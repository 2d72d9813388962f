//! Just enough ELF and BTF reading for the layout test: find a section of the object, then the
//! members of one struct in its BTF. Little-endian 64-bit ELF only (what `-target bpfel` makes).

/// The bytes of section `name`.
pub fn section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
    if elf.get(..4)? != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None; // not ELF64 little-endian
    }
    let shoff = u64le(elf, 0x28)? as usize;
    let shentsize = u16le(elf, 0x3a)? as usize;
    let shnum = u16le(elf, 0x3c)? as usize;
    let shstrndx = u16le(elf, 0x3e)? as usize;
    let header = |i: usize| elf.get(shoff + i * shentsize..shoff + (i + 1) * shentsize);
    let bytes = |h: &[u8]| {
        let (off, size) = (u64le(h, 0x18)? as usize, u64le(h, 0x20)? as usize);
        elf.get(off..off + size)
    };
    let names = bytes(header(shstrndx)?)?;
    (0..shnum).find_map(|i| {
        let h = header(i)?;
        let n = u32le(h, 0)? as usize;
        (cstr(names, n)? == name).then(|| bytes(h)).flatten()
    })
}

/// Size and (member name, byte offset) list of the struct called `name` in a `.BTF` section.
pub fn struct_layout(btf: &[u8], name: &str) -> Option<(usize, Vec<(String, usize)>)> {
    if u16le(btf, 0)? != 0xeb9f {
        return None;
    }
    let hdr_len = u32le(btf, 4)? as usize;
    let (type_off, type_len) = (u32le(btf, 8)? as usize, u32le(btf, 12)? as usize);
    let str_off = u32le(btf, 16)? as usize;
    let types = btf.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
    let strings = btf.get(hdr_len + str_off..)?;
    let mut at = 0;
    while at < types.len() {
        let name_off = u32le(types, at)? as usize;
        let info = u32le(types, at + 4)?;
        let size = u32le(types, at + 8)? as usize;
        let (vlen, kind, kind_flag) = ((info & 0xffff) as usize, (info >> 24) & 0x1f, info >> 31);
        at += 12;
        const STRUCT: u32 = 4;
        if kind == STRUCT && cstr(strings, name_off)? == name {
            let members = (0..vlen)
                .map(|i| {
                    let m = at + i * 12;
                    let n = cstr(strings, u32le(types, m)? as usize)?.to_string();
                    let bits = u32le(types, m + 8)?;
                    let bits = if kind_flag == 1 {
                        bits & 0xff_ffff
                    } else {
                        bits
                    };
                    Some((n, bits as usize / 8))
                })
                .collect::<Option<Vec<_>>>()?;
            return Some((size, members));
        }
        // Skip the kind-specific data that follows the common header.
        at += match kind {
            1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
            3 => 12,                      // ARRAY
            4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
            _ => 0,                       // PTR, FWD, TYPEDEF, qualifiers, FUNC, FLOAT, TYPE_TAG
        };
    }
    None
}

fn cstr(b: &[u8], at: usize) -> Option<&str> {
    let s = b.get(at..)?;
    std::str::from_utf8(&s[..s.iter().position(|&c| c == 0)?]).ok()
}

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
