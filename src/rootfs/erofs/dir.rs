//! Directory content: dirents sorted by name, packed into blocks.
//!
//! Each block holds a run of 12-byte dirents followed by their names; a name never
//! crosses a block. Every block but the last is padded to the block size with zeros,
//! so the kernel finds the end of each block's last name; the last block ends at the
//! directory's size.

use super::format::{encode_dirent, FileType, BLOCK_SIZE, DIRENT_SIZE};

/// One entry of a directory as stored.
#[derive(Debug, Clone, Copy)]
pub struct DirEntry<'a> {
    pub name: &'a [u8],
    pub nid: u64,
    pub file_type: FileType,
}

/// Sorts entries by name, as EROFS lookups binary-search them.
pub fn sort_entries(entries: &mut [DirEntry<'_>]) {
    entries.sort_unstable_by(|a, b| a.name.cmp(b.name));
}

/// Packs sorted entries into blocks, calling `emit` with each block's bytes; returns
/// the directory's size. Names are at most 255 bytes, so every block fits at least one.
pub fn pack(entries: &[DirEntry<'_>], mut emit: impl FnMut(&[u8])) -> u64 {
    let mut size = 0;
    let mut block = Vec::with_capacity(BLOCK_SIZE as usize);
    let mut rest = entries;
    while !rest.is_empty() {
        let count = entries_fitting(rest);
        let (here, next) = rest.split_at(count);
        encode_block(here, &mut block);
        rest = next;
        if !rest.is_empty() {
            block.resize(BLOCK_SIZE as usize, 0);
        }
        size += block.len() as u64;
        emit(&block);
    }
    size
}

fn entries_fitting(entries: &[DirEntry<'_>]) -> usize {
    let mut used = 0;
    for (i, entry) in entries.iter().enumerate() {
        used += DIRENT_SIZE + entry.name.len() as u64;
        if used > BLOCK_SIZE {
            return i;
        }
    }
    entries.len()
}

fn encode_block(entries: &[DirEntry<'_>], block: &mut Vec<u8>) {
    block.clear();
    let mut nameoff = DIRENT_SIZE * entries.len() as u64;
    for entry in entries {
        // nameoff < BLOCK_SIZE by construction of `entries_fitting`.
        encode_dirent(block, entry.nid, nameoff as u16, entry.file_type);
        nameoff += entry.name.len() as u64;
    }
    for entry in entries {
        block.extend_from_slice(entry.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_pads_all_blocks_but_the_last() {
        let names: Vec<Vec<u8>> = (0..400).map(|i| format!("name-{i:05}").into_bytes()).collect();
        let entries: Vec<DirEntry<'_>> = names
            .iter()
            .map(|n| DirEntry {
                name: n,
                nid: 7,
                file_type: FileType::Regular,
            })
            .collect();
        let mut blocks = Vec::new();
        let size = pack(&entries, |b| blocks.push(b.len()));
        // 400 entries of 22 bytes: 186 per block.
        assert_eq!(blocks, vec![4096, 4096, 28 * 22]);
        assert_eq!(size, 4096 * 2 + 28 * 22);
    }
}
