//! Reproducible image layers: a tar with sorted entries, fixed ownership and
//! times, gzipped without a timestamp, so the same files give the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use flate2::Compression;

use crate::artifact::Blob;
use crate::digest;

/// A file's permission bits and bytes.
type File = (u32, Arc<[u8]>);

/// The files of one layer, by path inside the image (no leading `/`).
#[derive(Debug, Default)]
pub struct Files {
    files: BTreeMap<String, File>,
}

impl Files {
    /// Adds a file with its permission bits.
    pub fn add(&mut self, path: impl Into<String>, mode: u32, bytes: impl Into<Arc<[u8]>>) {
        self.files.insert(path.into(), (mode, bytes.into()));
    }

    /// The layer: every parent directory as an entry of its own, then the
    /// files, in path order, owned by root, with `mtime` (seconds since the epoch).
    pub fn layer(&self, mtime: u64) -> Layer {
        let mut directories = std::collections::BTreeSet::new();
        for path in self.files.keys() {
            let mut parent = path.as_str();
            while let Some((up, _)) = parent.rsplit_once('/') {
                directories.insert(format!("{up}/"));
                parent = up;
            }
        }
        let mut entries: BTreeMap<&str, Option<&File>> = BTreeMap::new();
        for directory in &directories {
            entries.insert(directory, None);
        }
        for (path, file) in &self.files {
            entries.insert(path, Some(file));
        }

        let mut tar = tar::Builder::new(Vec::new());
        for (path, file) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(mtime);
            match file {
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    tar.append_data(&mut header, path, std::io::empty())
                }
                Some((mode, bytes)) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, path, &bytes[..])
                }
            }
            .expect("writing a tar to memory cannot fail");
        }
        let tar = tar
            .into_inner()
            .expect("writing a tar to memory cannot fail");
        Layer::from_tar(&tar)
    }
}

/// One compressed layer and its digests.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Digest of the compressed blob (what the manifest names).
    pub digest: String,
    /// Digest of the uncompressed tar (the config's `diff_ids`).
    pub diff_id: String,
    /// The compressed blob.
    pub blob: Arc<[u8]>,
}

impl Layer {
    /// The compressed layer as a blob of `media_type` (an image layer,
    /// a chart's content).
    pub fn to_blob(&self, media_type: &str) -> Blob {
        Blob {
            media_type: media_type.into(),
            digest: self.digest.clone(),
            bytes: self.blob.clone(),
        }
    }

    /// Gzips `tar` with no name and no timestamp in the gzip header.
    fn from_tar(tar: &[u8]) -> Layer {
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::with_capacity(tar.len() / 2), Compression::default());
        gz.write_all(tar).expect("writing to memory cannot fail");
        let blob = gz.finish().expect("writing to memory cannot fail");
        Layer {
            digest: digest(&blob),
            diff_id: digest(tar),
            blob: blob.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(layer: &Layer) -> Vec<(String, u32, u64, u64)> {
        let tar = flate2::read::GzDecoder::new(&layer.blob[..]);
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn same_files_give_the_same_bytes_in_any_order() {
        let mut a = Files::default();
        a.add("bundle/plugins/b.wasm", 0o644, b"bb".to_vec());
        a.add("bundle/flow.json", 0o644, b"{}".to_vec());
        let mut b = Files::default();
        b.add("bundle/flow.json", 0o644, b"{}".to_vec());
        b.add("bundle/plugins/b.wasm", 0o644, b"bb".to_vec());
        let (la, lb) = (a.layer(0), b.layer(0));
        assert_eq!(la.digest, lb.digest);
        assert_eq!(la.blob, lb.blob);
        assert_ne!(
            a.layer(1).digest,
            la.digest,
            "the time is part of the layer"
        );
        assert_eq!(
            entries(&la),
            vec![
                ("bundle/".into(), 0o755, 0, 0),
                ("bundle/flow.json".into(), 0o644, 0, 0),
                ("bundle/plugins/".into(), 0o755, 0, 0),
                ("bundle/plugins/b.wasm".into(), 0o644, 0, 0),
            ]
        );
        assert_eq!(&la.diff_id[..7], "sha256:");
    }
}
