//! What a plugin file says about itself, read from its ELF structure without
//! loading it (object's ELF reader, reading only the parts it needs).
//!
//! On the way the structure is checked against the file size: the file
//! header, every program header and the segment it describes, and the section
//! headers. A truncated library would otherwise be mapped by `dlopen` and
//! crash kpod with SIGBUS when the loader touches a page past the end.

use kpod_plugin_sdk::ffi::ROOT_MODULE_LOADER_NAME;
use kpod_plugin_sdk::metadata::{self, Decoded, METADATA_SYMBOL};
use kpod_plugin_sdk::{PluginMeta, ABI_VERSION_SYMBOL};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, Sym};
use object::{Endianness, FileKind, ReadCache, ReadRef};
use std::fs::File;

/// The ELF file header of this process's word size.
#[cfg(target_pointer_width = "64")]
type NativeHeader = elf::FileHeader64<Endianness>;
#[cfg(target_pointer_width = "32")]
type NativeHeader = elf::FileHeader32<Endianness>;

/// Metadata records longer than this are refused (a real one is a few hundred bytes).
const MAX_RECORD: u64 = 1 << 20;

/// What the file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// The value of `KPOD_PLUGIN_ABI_VERSION`.
    pub abi_version: u32,
    /// The declared metadata; `None` for plugins built before it existed or
    /// that declare none (they are loaded to ask).
    pub meta: Option<PluginMeta>,
}

/// Why a file was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a kpod plugin library (not ELF, no ABI symbol).
    NotAPlugin(String),
    /// A kpod plugin, or what may have been one, that cannot be used.
    Refused(String),
}

/// Reads the facts of the library open as `file`.
pub fn read_facts(file: &File) -> Result<FileFacts, Rejection> {
    let len = file
        .metadata()
        .map_err(|e| Rejection::Refused(format!("reading its size: {e}")))?
        .len();
    let cache = ReadCache::new(file);
    let data = &cache;
    match FileKind::parse(data) {
        Ok(FileKind::Elf64) if cfg!(target_pointer_width = "64") => {}
        Ok(FileKind::Elf32) if cfg!(target_pointer_width = "32") => {}
        Ok(FileKind::Elf32 | FileKind::Elf64) => {
            return Err(Rejection::Refused(
                "an ELF file of another word size than this kpod's".to_string(),
            ))
        }
        _ => return Err(Rejection::NotAPlugin("not an ELF file".to_string())),
    }
    let damaged = |what: String| Rejection::Refused(format!("damaged ELF file: {what}"));
    let header = NativeHeader::parse(data).map_err(|e| damaged(e.to_string()))?;
    let endian = header.endian().map_err(|e| damaged(e.to_string()))?;
    check_header(header, endian)?;
    let segments = header
        .program_headers(endian, data)
        .map_err(|e| damaged(format!("{e} (truncated?)")))?;
    check_segments(segments, endian, len).map_err(damaged)?;
    let sections = header
        .sections(endian, data)
        .map_err(|e| damaged(format!("{e} (truncated?)")))?;
    for (index, section) in sections.iter().enumerate() {
        if let Some((offset, size)) = section.file_range(endian) {
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(damaged(format!(
                    "section {index} ends past the end of the file ({len} bytes; truncated?)"
                )));
            }
        }
    }
    let dynsym = sections
        .symbols(endian, data, elf::SHT_DYNSYM)
        .map_err(|e| damaged(e.to_string()))?;
    let mut abi = None;
    let mut record = None;
    let mut has_root_module = false;
    for sym in dynsym.iter() {
        if sym.st_shndx(endian) == elf::SHN_UNDEF {
            continue;
        }
        let Ok(name) = sym.name(endian, dynsym.strings()) else {
            continue;
        };
        let bytes = |sym: &<NativeHeader as FileHeader>::Sym| {
            let size = word(sym.st_size(endian));
            let name = String::from_utf8_lossy(name).into_owned();
            if size > MAX_RECORD {
                return Err(damaged(format!("symbol {name} is {size} bytes")));
            }
            symbol_bytes(segments, endian, data, word(sym.st_value(endian)), size)
                .ok_or_else(|| damaged(format!("symbol {name} lies outside the file's data")))
        };
        if name == ABI_VERSION_SYMBOL.as_bytes() {
            let b = bytes(sym)?;
            let b: [u8; 4] = b
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| damaged(format!("{ABI_VERSION_SYMBOL} is not 4 bytes")))?;
            abi = Some(match endian {
                Endianness::Little => u32::from_le_bytes(b),
                Endianness::Big => u32::from_be_bytes(b),
            });
        } else if name == METADATA_SYMBOL.as_bytes() {
            record = Some(bytes(sym)?);
        } else if name == ROOT_MODULE_LOADER_NAME.as_bytes() {
            has_root_module = true;
        }
    }
    let abi_version =
        abi.ok_or_else(|| Rejection::NotAPlugin(format!("no {ABI_VERSION_SYMBOL} symbol")))?;
    if !has_root_module {
        return Err(Rejection::Refused(format!(
            "it exports {ABI_VERSION_SYMBOL} but no abi_stable root module (symbol {ROOT_MODULE_LOADER_NAME}); build it with kpod_plugin_sdk::export_plugin!"
        )));
    }
    let meta = match record.as_deref().map(metadata::decode) {
        None | Some(Ok(Decoded::UnknownFormat(_))) => None,
        Some(Ok(Decoded::Record {
            abi_version: a,
            meta,
        })) => {
            if a != abi_version {
                return Err(Rejection::Refused(format!(
                    "its {METADATA_SYMBOL} says ABI {a} but {ABI_VERSION_SYMBOL} says {abi_version}"
                )));
            }
            meta
        }
        Some(Err(e)) => {
            return Err(Rejection::Refused(format!(
                "its {METADATA_SYMBOL} record is damaged: {e}"
            )))
        }
    };
    Ok(FileFacts { abi_version, meta })
}

/// A shared library of this machine's type, byte order and ELF class.
fn check_header(header: &NativeHeader, endian: Endianness) -> Result<(), Rejection> {
    if endian != Endianness::default() {
        return Err(Rejection::Refused(
            "an ELF file of the other byte order".to_string(),
        ));
    }
    let kind = header.e_type(endian);
    if kind != elf::ET_DYN {
        return Err(Rejection::NotAPlugin(format!(
            "not a shared library (ELF type {kind})"
        )));
    }
    let machine = header.e_machine(endian);
    if let Some(native) = native_machine() {
        if machine != native {
            return Err(Rejection::Refused(format!(
                "built for machine {machine}, this kpod runs on {native}"
            )));
        }
    }
    Ok(())
}

/// Every segment within the file, at least one loadable.
fn check_segments(
    segments: &[<NativeHeader as FileHeader>::ProgramHeader],
    endian: Endianness,
    len: u64,
) -> Result<(), String> {
    for (index, segment) in segments.iter().enumerate() {
        let (offset, size) = segment.file_range(endian);
        if offset.checked_add(size).is_none_or(|end| end > len) {
            let kind = match segment.p_type(endian) {
                elf::PT_LOAD => "loadable".to_string(),
                other => format!("type {other}"),
            };
            return Err(format!(
                "segment {index} ({kind}) ends past the end of the file ({len} bytes; truncated?)"
            ));
        }
    }
    if !segments.iter().any(|s| s.p_type(endian) == elf::PT_LOAD) {
        return Err("no loadable segment".to_string());
    }
    Ok(())
}

/// The `size` bytes at virtual address `address`, from the loadable segment
/// holding them (zeros where the segment extends past its file part, as a
/// zero-initialised static in `.bss` would).
fn symbol_bytes(
    segments: &[<NativeHeader as FileHeader>::ProgramHeader],
    endian: Endianness,
    data: &ReadCache<&File>,
    address: u64,
    size: u64,
) -> Option<Vec<u8>> {
    let end = address.checked_add(size)?;
    let segment = segments.iter().find(|s| {
        let start = word(s.p_vaddr(endian));
        let memsz = word(s.p_memsz(endian));
        s.p_type(endian) == elf::PT_LOAD
            && start <= address
            && start.checked_add(memsz).is_some_and(|e| end <= e)
    })?;
    let start = word(segment.p_vaddr(endian));
    let filesz = word(segment.p_filesz(endian));
    let offset = word(segment.p_offset(endian));
    let from = address - start;
    let in_file = filesz.saturating_sub(from).min(size);
    let mut bytes = if in_file == 0 {
        Vec::new()
    } else {
        data.read_bytes_at(offset.checked_add(from)?, in_file)
            .ok()?
            .to_vec()
    };
    bytes.resize(usize::try_from(size).ok()?, 0);
    Some(bytes)
}

/// An ELF word as `u64`: the identity on 64-bit targets, a widening on 32-bit ones.
#[allow(clippy::useless_conversion)]
fn word(value: <NativeHeader as FileHeader>::Word) -> u64 {
    value.into()
}

/// The ELF machine of this build of kpod, where known.
fn native_machine() -> Option<elf::Machine> {
    let machine = if cfg!(target_arch = "x86_64") {
        elf::EM_X86_64
    } else if cfg!(target_arch = "aarch64") {
        elf::EM_AARCH64
    } else if cfg!(target_arch = "riscv64") {
        elf::EM_RISCV
    } else if cfg!(target_arch = "powerpc64") {
        elf::EM_PPC64
    } else if cfg!(target_arch = "s390x") {
        elf::EM_S390
    } else {
        return None;
    };
    Some(machine)
}
