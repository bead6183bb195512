//! Docker build contexts: a directory uploaded as a tar (plain or gzip) or a
//! zip archive, checked and turned into the tar the Docker Engine takes.
//!
//! Every entry must stay inside the context: absolute paths and `..` are
//! refused, naming the entry, before anything reaches the daemon. Links are
//! resolved against the links the archive made before them, as the tree
//! would be unpacked, so a chain of links cannot climb out either. The size
//! bound is on the bytes actually inflated, not on what the archive
//! declares.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use flate2::read::GzDecoder;

/// The largest context accepted, unpacked (my choice: a build context is
/// source code, not data).
pub const MAX_CONTEXT_BYTES: u64 = 512 << 20;

/// Why an archive is not a usable build context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// Neither tar, gzip-compressed tar nor zip.
    #[error("the build context is not a tar, tar.gz or zip archive")]
    UnknownFormat,
    /// The archive is damaged.
    #[error("the build context cannot be read: {0}")]
    Corrupt(String),
    /// An entry would land outside the context.
    #[error("the build context entry `{0}` points outside the context")]
    Escapes(String),
    /// The Dockerfile the build names is not in the archive.
    #[error("the build context has no `{0}`")]
    NoDockerfile(String),
    /// Larger than the limit (bytes), [`MAX_CONTEXT_BYTES`] unless set.
    #[error("the build context is larger than {0} bytes unpacked")]
    TooLarge(u64),
}

/// A checked build context: an uncompressed tar and the paths it holds.
#[derive(Debug, Clone)]
pub struct BuildContext {
    tar: Vec<u8>,
    paths: Vec<String>,
}

impl BuildContext {
    /// Reads a tar, tar.gz or zip archive of a directory.
    pub fn from_archive(archive: &[u8]) -> Result<BuildContext, ContextError> {
        BuildContext::from_archive_within(archive, MAX_CONTEXT_BYTES)
    }

    /// The same, refusing more than `max` bytes unpacked (reported as
    /// [`ContextError::TooLarge`]).
    pub fn from_archive_within(archive: &[u8], max: u64) -> Result<BuildContext, ContextError> {
        if archive.starts_with(b"PK\x03\x04") || archive.starts_with(b"PK\x05\x06") {
            from_zip(archive, max)
        } else if archive.starts_with(&[0x1f, 0x8b]) {
            let mut tar = Vec::new();
            GzDecoder::new(archive)
                .take(max + 1)
                .read_to_end(&mut tar)
                .map_err(|e| ContextError::Corrupt(e.to_string()))?;
            if tar.len() as u64 > max {
                return Err(ContextError::TooLarge(max));
            }
            from_tar(tar)
        } else if archive.get(257..262) == Some(b"ustar") {
            if archive.len() as u64 > max {
                return Err(ContextError::TooLarge(max));
            }
            from_tar(archive.to_vec())
        } else {
            Err(ContextError::UnknownFormat)
        }
    }

    /// Checks that `dockerfile` (a path inside the context) is there.
    pub fn require(&self, dockerfile: &str) -> Result<(), ContextError> {
        let wanted =
            normalise(dockerfile).ok_or_else(|| ContextError::Escapes(dockerfile.into()))?;
        if self.paths.contains(&wanted) {
            Ok(())
        } else {
            Err(ContextError::NoDockerfile(dockerfile.into()))
        }
    }

    /// The files and directories inside, as relative paths.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// The bytes of the file at `path` (relative to the root), if the
    /// context holds one there.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        let mut archive = tar::Archive::new(Cursor::new(&self.tar));
        for entry in archive.entries().ok()? {
            let mut entry = entry.ok()?;
            let name = entry.path().ok()?.to_string_lossy().into_owned();
            if normalise(&name).as_deref() == Some(path) && entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).ok()?;
                return Some(bytes);
            }
        }
        None
    }

    /// The uncompressed tar the daemon takes.
    pub fn into_tar(self) -> Vec<u8> {
        self.tar
    }
}

/// `path` relative to the context root, with `.` and `..` resolved, or
/// `None` when it is absolute or climbs out of the root.
fn normalise(path: &str) -> Option<String> {
    if path.starts_with('/') || path.starts_with('\\') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// How many links one path may pass through before it is refused.
const MAX_LINK_HOPS: usize = 40;

/// Where `path` (taken from `base`, a directory inside the context) leads
/// in a tree whose symbolic links are `links` (path → target), or `None`
/// when it leaves the context (or loops).
fn resolve(links: &HashMap<String, String>, base: &[String], path: &str) -> Option<Vec<String>> {
    // As the tree is unpacked on Linux: `/` alone separates names.
    let components =
        |text: &str| -> Vec<String> { text.split('/').rev().map(str::to_string).collect() };
    if path.starts_with('/') {
        return None;
    }
    let mut at = base.to_vec();
    let mut pending = components(path);
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                at.pop()?;
            }
            name => {
                at.push(name.to_string());
                if let Some(target) = links.get(&at.join("/")) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS || target.starts_with('/') {
                        return None;
                    }
                    at.pop();
                    pending.extend(components(target));
                }
            }
        }
    }
    Some(at)
}

/// The target of the symbolic link at `path` (from the root), if it is one.
fn linked(links: &HashMap<String, String>, path: &str) -> Option<String> {
    let path = path.trim_end_matches('/');
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let mut at = resolve(links, &[], parent)?;
    at.push(name.to_string());
    links.get(&at.join("/")).cloned()
}

/// Checks a tar's entries; a link may not point outside either, followed
/// through the links before it.
fn from_tar(tar: Vec<u8>) -> Result<BuildContext, ContextError> {
    let mut links: HashMap<String, String> = HashMap::new();
    let mut paths = Vec::new();
    let mut archive = tar::Archive::new(Cursor::new(&tar));
    let entries = archive
        .entries()
        .map_err(|e| ContextError::Corrupt(e.to_string()))?;
    for entry in entries {
        let entry = entry.map_err(|e| ContextError::Corrupt(e.to_string()))?;
        let text = |bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .map(str::to_string)
                .map_err(|_| ContextError::Corrupt("an entry's name is not UTF-8".into()))
        };
        let raw = text(&entry.path_bytes())?;
        let path = normalise(&raw).ok_or(ContextError::Escapes(raw.clone()))?;
        // Where the entry lands, through the links made so far; what it
        // replaces there is no longer a link.
        let written = raw.trim_end_matches('/');
        let (parent, name) = written.rsplit_once('/').unwrap_or(("", written));
        let dir = resolve(&links, &[], parent).ok_or(ContextError::Escapes(raw.clone()))?;
        let at = [dir.as_slice(), &[name.to_string()]].concat().join("/");
        links.remove(&at);
        if let Some(target) = entry.link_name_bytes() {
            let target = text(&target)?;
            // A hard link to a symbolic link unpacks as that link, read from
            // its new place.
            let symbolic = match entry.header().entry_type() {
                kind if kind.is_symlink() => Some(target.clone()),
                kind if kind.is_hard_link() => linked(&links, &target),
                _ => None,
            };
            let inside = match &symbolic {
                Some(link) => resolve(&links, &dir, link).is_some(),
                None => resolve(&links, &[], &target).is_some(),
            };
            if !inside {
                return Err(ContextError::Escapes(raw));
            }
            if let Some(link) = symbolic {
                links.insert(at, link);
            }
        }
        if !path.is_empty() {
            paths.push(path);
        }
    }
    Ok(BuildContext { tar, paths })
}

/// Repacks a zip as a tar, keeping Unix modes where the zip has them;
/// refuses more than `max` bytes inflated, whatever the entries declare.
fn from_zip(bytes: &[u8], max: u64) -> Result<BuildContext, ContextError> {
    let corrupt = |e: zip::result::ZipError| ContextError::Corrupt(e.to_string());
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(corrupt)?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut paths = Vec::new();
    let mut total = 0u64;
    for index in 0..zip.len() {
        let mut file = zip.by_index(index).map_err(corrupt)?;
        let raw = file.name().to_string();
        let path = normalise(&raw).ok_or(ContextError::Escapes(raw.clone()))?;
        if path.is_empty() {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        if file.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(file.unix_mode().unwrap_or(0o755) & 0o7777);
            header.set_size(0);
            tar.append_data(&mut header, &path, std::io::empty())
                .map_err(|e| ContextError::Corrupt(e.to_string()))?;
        } else {
            let budget = max.saturating_sub(total);
            let mut content = Vec::with_capacity(file.size().min(budget) as usize);
            (&mut file)
                .take(budget + 1)
                .read_to_end(&mut content)
                .map_err(|e| ContextError::Corrupt(format!("{raw}: {e}")))?;
            total += content.len() as u64;
            if total > max {
                return Err(ContextError::TooLarge(max));
            }
            if file.is_symlink() {
                return Err(ContextError::Corrupt(format!(
                    "{raw}: symbolic links in a zip context are not supported"
                )));
            }
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(file.unix_mode().unwrap_or(0o644) & 0o7777);
            header.set_size(content.len() as u64);
            tar.append_data(&mut header, &path, content.as_slice())
                .map_err(|e| ContextError::Corrupt(e.to_string()))?;
        }
        paths.push(path);
    }
    let tar = tar
        .into_inner()
        .map_err(|e| ContextError::Corrupt(e.to_string()))?;
    Ok(BuildContext { tar, paths })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            // `set_path` refuses `..`; write the name as a hostile client would.
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            tar.append(&header, *content).unwrap();
        }
        tar.into_inner().unwrap()
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (path, content) in entries {
            let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
            zip.start_file(*path, options).unwrap();
            zip.write_all(content).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn a_zip_is_bounded_by_what_it_inflates_not_by_what_it_declares() {
        let mut zip = zip_of(&[
            ("Dockerfile", b"FROM scratch\n"),
            ("zeros", &vec![0; 2 << 20]),
        ]);
        // Declare the big entry 10 bytes long, in its local header and in the
        // central directory.
        let declare = |zip: &mut Vec<u8>, signature: &[u8], offset: usize| {
            let mut at = 0;
            while let Some(found) = zip[at..].windows(4).position(|w| w == signature) {
                let start = at + found;
                let size = &mut zip[start + offset..start + offset + 4];
                if u32::from_le_bytes(size.try_into().unwrap()) == 2 << 20 {
                    size.copy_from_slice(&10u32.to_le_bytes());
                }
                at = start + 4;
            }
        };
        declare(&mut zip, b"PK\x03\x04", 22);
        declare(&mut zip, b"PK\x01\x02", 24);
        let read = BuildContext::from_archive_within(&zip, 1 << 20).map(|_| ());
        assert!(
            matches!(
                read,
                Err(ContextError::TooLarge(_) | ContextError::Corrupt(_))
            ),
            "{read:?}"
        );
        let honest = zip_of(&[("zeros", &vec![0; 2 << 20])]);
        assert_eq!(
            BuildContext::from_archive_within(&honest, 1 << 20).map(|_| ()),
            Err(ContextError::TooLarge(1 << 20))
        );
    }

    #[test]
    fn tar_gzip_and_zip_contexts_are_read() {
        let entries: &[(&str, &[u8])] =
            &[("Dockerfile", b"FROM scratch\n"), ("./app/run.sh", b"x")];
        let tar = tar_of(entries);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        for archive in [tar.clone(), gz.finish().unwrap(), zip_of(entries)] {
            let context = BuildContext::from_archive(&archive).unwrap();
            assert_eq!(context.paths(), ["Dockerfile", "app/run.sh"]);
            context.require("Dockerfile").unwrap();
            context.require("./app/run.sh").unwrap();
            assert_eq!(
                context.require("build/Dockerfile"),
                Err(ContextError::NoDockerfile("build/Dockerfile".into()))
            );
            let mut unpacked = tar::Archive::new(Cursor::new(context.into_tar()));
            assert_eq!(unpacked.entries().unwrap().count(), 2);
        }
    }

    #[test]
    fn entries_outside_the_context_are_refused() {
        for name in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
            let entries: &[(&str, &[u8])] = &[("Dockerfile", b"FROM scratch\n"), (name, b"x")];
            let expected = Err(ContextError::Escapes(name.into()));
            assert_eq!(
                BuildContext::from_archive(&tar_of(entries)).map(|_| ()),
                expected
            );
            assert_eq!(
                BuildContext::from_archive(&zip_of(entries)).map(|_| ()),
                expected
            );
        }
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        tar.append_link(&mut header, "sub/link", "../../outside")
            .unwrap();
        let archive = tar.into_inner().unwrap();
        assert_eq!(
            BuildContext::from_archive(&archive).map(|_| ()),
            Err(ContextError::Escapes("sub/link".into()))
        );
        // Links resolve through the links before them: `d` is the root, so
        // `d/..` is above it, however it reads.
        let link = |tar: &mut tar::Builder<Vec<u8>>, path: &str, target: &str| {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, path, target).unwrap();
        };
        let mut tar = tar::Builder::new(Vec::new());
        link(&mut tar, "d", ".");
        link(&mut tar, "l", "d/..");
        assert_eq!(
            BuildContext::from_archive(&tar.into_inner().unwrap()).map(|_| ()),
            Err(ContextError::Escapes("l".into()))
        );
        let mut tar = tar::Builder::new(Vec::new());
        link(&mut tar, "d", ".");
        let mut archive = tar.into_inner().unwrap();
        archive.truncate(archive.len() - 1024);
        archive.extend(tar_of(&[("d/../x", b"x")]));
        assert_eq!(
            BuildContext::from_archive(&archive).map(|_| ()),
            Err(ContextError::Escapes("d/../x".into()))
        );
        // A backslash is part of a name, not a separator.
        let mut tar = tar::Builder::new(Vec::new());
        link(&mut tar, "p\\q\\r", "../../x");
        assert_eq!(
            BuildContext::from_archive(&tar.into_inner().unwrap()).map(|_| ()),
            Err(ContextError::Escapes("p\\q\\r".into()))
        );
        // A hard link to a symbolic link is that link in its new place.
        let mut tar = tar::Builder::new(Vec::new());
        link(&mut tar, "a/b/up", "../x");
        let mut hard = tar::Header::new_ustar();
        hard.set_entry_type(tar::EntryType::Link);
        hard.set_size(0);
        tar.append_link(&mut hard, "top", "a/b/up").unwrap();
        assert_eq!(
            BuildContext::from_archive(&tar.into_inner().unwrap()).map(|_| ()),
            Err(ContextError::Escapes("top".into()))
        );
        // A path that was a link and is declared again is that entry now.
        let mut tar = tar::Builder::new(Vec::new());
        link(&mut tar, "d", "a/b/c");
        let mut dir = tar::Header::new_ustar();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o755);
        tar.append_data(&mut dir, "d", std::io::empty()).unwrap();
        link(&mut tar, "d/l", "../../../x");
        assert_eq!(
            BuildContext::from_archive(&tar.into_inner().unwrap()).map(|_| ()),
            Err(ContextError::Escapes("d/l".into()))
        );
        // A link that stays inside is fine.
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_link(&mut header, "sub/link", "../inside")
            .unwrap();
        let archive = tar.into_inner().unwrap();
        assert!(BuildContext::from_archive(&archive).is_ok());
        assert_eq!(
            BuildContext::from_archive(b"not an archive").map(|_| ()),
            Err(ContextError::UnknownFormat)
        );
    }
}
