//! The server's own image store: where the images of an organisation with
//! no registry go, to be served read-only over the OCI distribution API.
//!
//! On disk, under its root, each organisation has a directory of its own
//! (by id), so nothing is shared between organisations:
//!
//! ```text
//! <org>/blobs/sha256/<hex>                    manifests, configs and layers
//! <org>/repositories/<repo>/manifests/<hex>   a manifest the repository holds
//! <org>/repositories/<repo>/tags/<tag>        the manifest digest a tag names
//! ```
//!
//! Every file is written whole and renamed into place, blobs before the
//! manifests naming them and manifests before the tags, so a crash leaves
//! at most blobs that nothing names; the next collection removes them.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use slipway_oci::artifact::Artifact;
use slipway_store::PushReport;

pub use slipway_oci::push::Deleted;

/// How long a pull credential minted for a Docker Engine holds.
const PULL_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// The largest manifest read back (the server's own are a few KiB).
const MAX_MANIFEST: u64 = 256 << 10;
/// Repositories whose members are kept in memory at once.
const MAX_KEPT_MEMBERS: usize = 4096;
/// Pull credentials held at once; the oldest go first.
const MAX_PULL_CREDENTIALS: usize = 4096;
/// The user name a minted pull credential goes with.
pub const PULL_USER: &str = "slipway-pull";

/// The server's image store.
#[derive(Clone)]
pub struct Images {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// `host:port` clients pull from.
    address: String,
    /// Bytes of blobs one organisation may keep.
    limit: u64,
    /// One lock per organisation, held while writing or collecting, so a
    /// collection never takes the blobs of a push in flight.
    writing: Mutex<HashMap<u64, Arc<Mutex<()>>>>,
    /// Bumped by every write, so members read before it are not kept.
    generation: AtomicU64,
    /// Minted pull passwords: the organisation each reads and until when.
    pulls: Mutex<HashMap<String, (u64, Instant)>>,
    /// The blobs each repository's manifests name, as last read.
    members: Mutex<HashMap<(u64, String), Members>>,
}

/// The digests a repository's manifests are and name.
type Members = Arc<BTreeSet<String>>;

/// A manifest as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its `mediaType`.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its bytes, as pushed.
    pub bytes: Vec<u8>,
}

/// A blob's file and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its length in bytes.
    pub size: u64,
}

/// Whether `name` can be a repository path component: lowercase letters
/// and digits, with `.`, `_` or `-` inside, at most 128 characters (the
/// distribution spec's rule, bounded).
pub fn is_component(name: &str) -> bool {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=128).contains(&bytes.len())
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes
            .iter()
            .all(|b| alnum(b) || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `tag` is a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    (1..=128).contains(&bytes.len())
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The hex of a `sha256:<64 lowercase hex>` digest.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// What a manifest names: its config, layers and (an index) manifests.
#[derive(Deserialize)]
struct Names {
    #[serde(default, rename = "mediaType")]
    media_type: String,
    #[serde(default)]
    config: Option<Named>,
    #[serde(default)]
    layers: Vec<Named>,
    #[serde(default)]
    manifests: Vec<Named>,
}

#[derive(Deserialize)]
struct Named {
    digest: String,
}

impl Names {
    fn digests(&self) -> impl Iterator<Item = &str> {
        self.config
            .iter()
            .chain(&self.layers)
            .chain(&self.manifests)
            .map(|n| n.digest.as_str())
    }
}

impl Images {
    /// The store under `root`, pulled from at `listening` (an unspecified
    /// address is pulled from on loopback).
    pub fn new(root: PathBuf, listening: SocketAddr) -> Images {
        let mut address = listening;
        if address.ip().is_unspecified() {
            address.set_ip(match address {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Images {
            inner: Arc::new(Inner {
                root,
                address: address.to_string(),
                limit: u64::MAX,
                writing: Mutex::default(),
                generation: AtomicU64::new(0),
                pulls: Mutex::default(),
                members: Mutex::default(),
            }),
        }
    }

    /// The same, keeping at most `bytes` of blobs per organisation.
    pub fn with_limit(self, bytes: u64) -> Images {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("the limit is set before the store is shared"));
        Images {
            inner: Arc::new(Inner {
                limit: bytes,
                ..inner
            }),
        }
    }

    /// `host:port`, the registry part of the store's image references.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Stores `artifact` in `repository` of `organisation`, tagged `tag`.
    pub async fn put(
        &self,
        organisation: u64,
        repository: &str,
        tag: &str,
        artifact: &Artifact,
    ) -> io::Result<PushReport> {
        if !is_component(repository) || !is_tag(tag) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{repository}:{tag}` is not a repository and tag of the image store"),
            ));
        }
        let (repository, tag, artifact) = (repository.to_owned(), tag.to_owned(), artifact.clone());
        self.off_thread(move |store| store.put(organisation, &repository, &tag, &artifact))
            .await
    }

    /// Removes manifest `digest` from `repository` (and `tag`, when it
    /// still names it), then every blob of `organisation` no manifest names.
    pub async fn delete(
        &self,
        organisation: u64,
        repository: &str,
        tag: &str,
        digest: &str,
    ) -> io::Result<Deleted> {
        if !is_component(repository) || !is_tag(tag) || digest_hex(digest).is_none() {
            return Ok(Deleted::Absent);
        }
        let (repository, tag, digest) = (repository.to_owned(), tag.to_owned(), digest.to_owned());
        self.off_thread(move |store| store.delete(organisation, &repository, &tag, &digest))
            .await
    }

    /// Removes `tag` of `repository` when it names `digest`, keeping the
    /// manifest (another release has it under another tag).
    pub async fn untag(
        &self,
        organisation: u64,
        repository: &str,
        tag: &str,
        digest: &str,
    ) -> io::Result<()> {
        if !is_component(repository) || !is_tag(tag) {
            return Ok(());
        }
        let (repository, tag, digest) = (repository.to_owned(), tag.to_owned(), digest.to_owned());
        self.off_thread(move |store| {
            let lock = store.lock(organisation);
            let _writing = lock.lock().expect("image store lock");
            let path = store
                .repository(organisation, &repository)
                .join("tags")
                .join(&tag);
            if std::fs::read(&path).is_ok_and(|named| named == digest.as_bytes()) {
                std::fs::remove_file(&path)?;
            }
            Ok(())
        })
        .await
    }

    /// The manifest `reference` (a tag or a digest) of `repository`.
    pub async fn manifest(
        &self,
        organisation: u64,
        repository: &str,
        reference: &str,
    ) -> io::Result<Option<Manifest>> {
        if !is_component(repository) || !(is_tag(reference) || digest_hex(reference).is_some()) {
            return Ok(None);
        }
        let (repository, reference) = (repository.to_owned(), reference.to_owned());
        self.off_thread(move |store| store.manifest(organisation, &repository, &reference))
            .await
    }

    /// Blob `digest`, when a manifest of `repository` names it.
    pub async fn blob(
        &self,
        organisation: u64,
        repository: &str,
        digest: &str,
    ) -> io::Result<Option<BlobFile>> {
        if !is_component(repository) || digest_hex(digest).is_none() {
            return Ok(None);
        }
        let (repository, digest) = (repository.to_owned(), digest.to_owned());
        self.off_thread(move |store| store.blob(organisation, &repository, &digest))
            .await
    }

    /// The tags of `repository`, sorted; `None` when it holds nothing.
    pub async fn tags(
        &self,
        organisation: u64,
        repository: &str,
    ) -> io::Result<Option<Vec<String>>> {
        if !is_component(repository) {
            return Ok(None);
        }
        let repository = repository.to_owned();
        self.off_thread(move |store| {
            let dir = store.repository(organisation, &repository);
            if !dir.is_dir() {
                return Ok(None);
            }
            let mut tags = names_in(&dir.join("tags"))?;
            tags.sort();
            Ok(Some(tags))
        })
        .await
    }

    /// Runs `work` on the store's files off the async threads.
    async fn off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(io::Error::other)?
    }

    /// A password (with [`PULL_USER`]) that pulls `organisation`'s images
    /// for a while: what the server hands a Docker Engine it deploys with.
    pub fn pull_password(&self, organisation: u64) -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the system's random source works");
        let password = hex::encode(bytes);
        let now = Instant::now();
        let mut pulls = self.inner.pulls.lock().expect("pull credentials lock");
        pulls.retain(|_, (_, until)| *until > now);
        if pulls.len() >= MAX_PULL_CREDENTIALS
            && let Some(oldest) = pulls
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| k.clone())
        {
            pulls.remove(&oldest);
        }
        pulls.insert(
            password.clone(),
            (organisation, now + PULL_CREDENTIAL_LIFETIME),
        );
        password
    }

    /// The organisation a minted pull password reads, while it holds.
    pub fn pull_organisation(&self, password: &str) -> Option<u64> {
        let pulls = self.inner.pulls.lock().expect("pull credentials lock");
        pulls
            .get(password)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(organisation, _)| *organisation)
    }
}

impl Inner {
    fn organisation(&self, organisation: u64) -> PathBuf {
        self.root.join(organisation.to_string())
    }

    fn repository(&self, organisation: u64, repository: &str) -> PathBuf {
        self.organisation(organisation)
            .join("repositories")
            .join(repository)
    }

    fn blob_path(&self, organisation: u64, hex: &str) -> PathBuf {
        self.organisation(organisation)
            .join("blobs")
            .join("sha256")
            .join(hex)
    }

    /// Writes `bytes` to `path` whole: a file beside it, then a rename.
    fn write(&self, organisation: u64, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.organisation(organisation).join("tmp");
        std::fs::create_dir_all(&tmp)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = tempfile::NamedTempFile::new_in(&tmp)?;
        file.write_all(bytes)?;
        file.as_file().sync_data()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The write lock of `organisation`.
    fn lock(&self, organisation: u64) -> Arc<Mutex<()>> {
        self.writing
            .lock()
            .expect("image store locks")
            .entry(organisation)
            .or_default()
            .clone()
    }

    fn put(
        &self,
        organisation: u64,
        repository: &str,
        tag: &str,
        artifact: &Artifact,
    ) -> io::Result<PushReport> {
        let lock = self.lock(organisation);
        let _writing = lock.lock().expect("image store lock");
        self.check_room(organisation, artifact)?;
        let mut report = PushReport::default();
        let mut store = |blob: &slipway_oci::artifact::Blob| -> io::Result<bool> {
            let hex = digest_hex(&blob.digest)
                .ok_or_else(|| io::Error::other("a blob without a sha256 digest"))?;
            let path = self.blob_path(organisation, hex);
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == blob.bytes.len() as u64) {
                return Ok(false);
            }
            self.write(organisation, &path, &blob.bytes)?;
            report.bytes_uploaded += blob.bytes.len() as u64;
            Ok(true)
        };
        let (mut uploaded, mut present) = (0, 0);
        for blob in artifact.blobs() {
            if store(blob)? {
                uploaded += 1;
            } else {
                present += 1;
            }
        }
        // The manifest counts among the bytes sent, not the blobs.
        store(&artifact.manifest)?;
        report.uploaded = uploaded;
        report.present = present;
        let hex = digest_hex(&artifact.manifest.digest).expect("stored above");
        let dir = self.repository(organisation, repository);
        self.write(organisation, &dir.join("manifests").join(hex), b"")?;
        self.write(
            organisation,
            &dir.join("tags").join(tag),
            artifact.manifest.digest.as_bytes(),
        )?;
        self.forget(organisation, repository);
        Ok(report)
    }

    fn delete(
        &self,
        organisation: u64,
        repository: &str,
        tag: &str,
        digest: &str,
    ) -> io::Result<Deleted> {
        let lock = self.lock(organisation);
        let _writing = lock.lock().expect("image store lock");
        let dir = self.repository(organisation, repository);
        let hex = digest_hex(digest).expect("checked by the caller");
        let tag_path = dir.join("tags").join(tag);
        if std::fs::read(&tag_path).is_ok_and(|named| named == digest.as_bytes()) {
            std::fs::remove_file(&tag_path)?;
        }
        let deleted = match std::fs::remove_file(dir.join("manifests").join(hex)) {
            Ok(()) => Deleted::Deleted,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Deleted::Absent,
            Err(e) => return Err(e),
        };
        self.forget(organisation, repository);
        if dir.is_dir()
            && names_in(&dir.join("manifests"))?.is_empty()
            && names_in(&dir.join("tags"))?.is_empty()
        {
            std::fs::remove_dir_all(&dir)?;
        }
        self.collect(organisation)?;
        Ok(deleted)
    }

    /// Refuses `artifact` when its new blobs would take `organisation`
    /// past its limit; the write lock is held.
    fn check_room(&self, organisation: u64, artifact: &Artifact) -> io::Result<()> {
        let blobs = self.organisation(organisation).join("blobs").join("sha256");
        let mut held = 0;
        for name in names_in(&blobs)? {
            held += std::fs::metadata(blobs.join(name)).map_or(0, |m| m.len());
        }
        let mut seen = BTreeSet::new();
        let new: u64 = artifact
            .blobs()
            .chain(std::iter::once(&artifact.manifest))
            .filter(|b| seen.insert(b.digest.as_str()))
            .filter(|b| digest_hex(&b.digest).is_none_or(|hex| !blobs.join(hex).exists()))
            .map(|b| b.bytes.len() as u64)
            .sum();
        if new > 0 && held.saturating_add(new) > self.limit {
            return Err(io::Error::other(format!(
                "the organisation's images would take {} MiB of the {} MiB the server keeps for it: delete releases, or set a registry",
                (held + new).div_ceil(1 << 20),
                self.limit >> 20
            )));
        }
        Ok(())
    }

    /// Removes every blob of `organisation` that no manifest of its
    /// repositories names, nor is one; the write lock is held.
    fn collect(&self, organisation: u64) -> io::Result<usize> {
        let mut kept = BTreeSet::new();
        for repository in names_in(&self.organisation(organisation).join("repositories"))? {
            kept.extend(self.read_members(organisation, &repository)?);
        }
        let mut removed = 0;
        let blobs = self.organisation(organisation).join("blobs").join("sha256");
        for hex in names_in(&blobs)? {
            if !kept.contains(&format!("sha256:{hex}")) {
                std::fs::remove_file(blobs.join(&hex))?;
                removed += 1;
            }
        }
        // What a write cut off left; none is in flight under the lock.
        let tmp = self.organisation(organisation).join("tmp");
        for name in names_in(&tmp)? {
            std::fs::remove_file(tmp.join(name))?;
        }
        if removed > 0 {
            tracing::info!(
                organisation,
                removed,
                "image store: blobs no manifest names removed"
            );
        }
        Ok(removed)
    }

    /// The digests `repository`'s manifests are and name, read from disk.
    fn read_members(&self, organisation: u64, repository: &str) -> io::Result<BTreeSet<String>> {
        let mut members = BTreeSet::new();
        for hex in names_in(&self.repository(organisation, repository).join("manifests"))? {
            let digest = format!("sha256:{hex}");
            if let Some(names) = self.names(organisation, &hex)? {
                members.extend(names.digests().map(str::to_string));
            }
            members.insert(digest);
        }
        Ok(members)
    }

    /// The same, kept until the repository changes.
    fn members(&self, organisation: u64, repository: &str) -> io::Result<Members> {
        let key = (organisation, repository.to_string());
        if let Some(members) = self.members.lock().expect("members lock").get(&key) {
            return Ok(members.clone());
        }
        let read_at = self.generation.load(Ordering::Acquire);
        let members = Arc::new(self.read_members(organisation, repository)?);
        let mut kept = self.members.lock().expect("members lock");
        // Kept only when no write came in between, and within bounds.
        if self.generation.load(Ordering::Acquire) == read_at {
            if kept.len() >= MAX_KEPT_MEMBERS {
                kept.clear();
            }
            kept.insert(key, members.clone());
        }
        Ok(members)
    }

    /// Drops what was kept of `repository`, after a write to it.
    fn forget(&self, organisation: u64, repository: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.members
            .lock()
            .expect("members lock")
            .remove(&(organisation, repository.to_string()));
    }

    fn manifest_bytes(&self, organisation: u64, hex: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.blob_path(organisation, hex);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() <= MAX_MANIFEST => Ok(Some(std::fs::read(&path)?)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn names(&self, organisation: u64, hex: &str) -> io::Result<Option<Names>> {
        Ok(self
            .manifest_bytes(organisation, hex)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    fn manifest(
        &self,
        organisation: u64,
        repository: &str,
        reference: &str,
    ) -> io::Result<Option<Manifest>> {
        let dir = self.repository(organisation, repository);
        let digest = match digest_hex(reference) {
            Some(_) => reference.to_string(),
            None => match std::fs::read_to_string(dir.join("tags").join(reference)) {
                Ok(digest) => digest,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            },
        };
        let Some(hex) = digest_hex(&digest) else {
            return Ok(None);
        };
        if !dir.join("manifests").join(hex).exists() {
            return Ok(None);
        }
        let Some(bytes) = self.manifest_bytes(organisation, hex)? else {
            return Ok(None);
        };
        let media_type = serde_json::from_slice::<Names>(&bytes)
            .map(|n| n.media_type)
            .unwrap_or_default();
        Ok(Some(Manifest {
            media_type,
            digest,
            bytes,
        }))
    }

    fn blob(
        &self,
        organisation: u64,
        repository: &str,
        digest: &str,
    ) -> io::Result<Option<BlobFile>> {
        // A repository that is not there is not remembered either.
        if !self.repository(organisation, repository).is_dir()
            || !self.members(organisation, repository)?.contains(digest)
        {
            return Ok(None);
        }
        let path = self.blob_path(
            organisation,
            digest_hex(digest).expect("checked by the caller"),
        );
        match std::fs::metadata(&path) {
            Ok(meta) => Ok(Some(BlobFile {
                path,
                size: meta.len(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The names of the entries of `dir`; none when it does not exist.
fn names_in(dir: &Path) -> io::Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_oci::artifact::{Blob, IMAGE_CONFIG, IMAGE_LAYER};

    fn artifact(layers: &[&[u8]]) -> Artifact {
        Artifact::new(
            Blob::new(IMAGE_CONFIG, b"{}".to_vec()),
            layers
                .iter()
                .map(|l| Blob::new(IMAGE_LAYER, l.to_vec()))
                .collect(),
            &Default::default(),
        )
    }

    fn images(dir: &Path) -> Images {
        Images::new(dir.to_path_buf(), "0.0.0.0:7420".parse().unwrap())
    }

    #[test]
    fn names_are_checked_before_any_path_is_made() {
        assert!(is_component("orders"));
        assert!(is_component("a.b_c-d"));
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "Orders",
            "-a",
            "a-",
            ".",
            &"a".repeat(129),
        ] {
            assert!(!is_component(bad), "{bad:?}");
        }
        assert!(is_tag("v1") && is_tag("_x.y-Z"));
        for bad in ["", ".v1", "-v1", "v/1", "..", &"v".repeat(129)] {
            assert!(!is_tag(bad), "{bad:?}");
        }
        assert!(digest_hex(&format!("sha256:{}", "a".repeat(64))).is_some());
        assert!(digest_hex(&format!("sha256:{}", "A".repeat(64))).is_none());
        assert!(digest_hex("sha256:../../etc").is_none());
    }

    #[test]
    fn an_unspecified_listen_address_is_pulled_from_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(images(dir.path()).address(), "127.0.0.1:7420");
        let v6 = Images::new(dir.path().into(), "[::]:7420".parse().unwrap());
        assert_eq!(v6.address(), "[::1]:7420");
    }

    #[tokio::test]
    async fn a_push_skips_what_is_there_and_a_delete_collects_what_nothing_names() {
        let dir = tempfile::tempdir().unwrap();
        let images = images(dir.path());
        let (one, two) = (artifact(&[b"base", b"one"]), artifact(&[b"base", b"two"]));
        let first = images.put(1, "orders", "v1", &one).await.unwrap();
        assert_eq!((first.uploaded, first.present), (3, 0));
        let second = images.put(1, "orders", "v2", &two).await.unwrap();
        assert_eq!(
            (second.uploaded, second.present),
            (1, 2),
            "base and config are there"
        );

        let got = images.manifest(1, "orders", "v1").await.unwrap().unwrap();
        assert_eq!(got.digest, one.manifest.digest);
        assert_eq!(got.media_type, slipway_oci::artifact::MANIFEST);
        assert_eq!(got.bytes, one.manifest.bytes.to_vec());
        let by_digest = images
            .manifest(1, "orders", &one.manifest.digest)
            .await
            .unwrap();
        assert_eq!(by_digest, Some(got));
        let layer = &one.layers[1].digest;
        assert!(images.blob(1, "orders", layer).await.unwrap().is_some());
        assert_eq!(
            images.tags(1, "orders").await.unwrap().unwrap(),
            ["v1", "v2"]
        );

        // Another organisation, or another repository, holds none of it.
        assert!(images.manifest(2, "orders", "v1").await.unwrap().is_none());
        assert!(images.blob(2, "orders", layer).await.unwrap().is_none());
        images.put(1, "other", "v1", &two).await.unwrap();
        assert!(images.blob(1, "other", layer).await.unwrap().is_none());

        let deleted = images
            .delete(1, "orders", "v1", &one.manifest.digest)
            .await
            .unwrap();
        assert_eq!(deleted, Deleted::Deleted);
        assert!(images.manifest(1, "orders", "v1").await.unwrap().is_none());
        assert!(
            images
                .manifest(1, "orders", &one.manifest.digest)
                .await
                .unwrap()
                .is_none()
        );
        let blobs = dir.path().join("1/blobs/sha256");
        let left = names_in(&blobs).unwrap().len();
        // base, two, config and the manifest of `two` stay; `one` and its manifest go.
        assert_eq!(left, 4);
        assert!(
            images
                .blob(1, "orders", &two.layers[0].digest)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(
            images
                .delete(1, "orders", "v1", &one.manifest.digest)
                .await
                .unwrap(),
            Deleted::Absent
        );
        images
            .delete(1, "orders", "v2", &two.manifest.digest)
            .await
            .unwrap();
        images
            .delete(1, "other", "v1", &two.manifest.digest)
            .await
            .unwrap();
        assert_eq!(names_in(&blobs).unwrap().len(), 0);
        assert!(images.tags(1, "orders").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_tag_moved_to_another_image_keeps_the_first_one_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let images = images(dir.path());
        let (one, two) = (artifact(&[b"one"]), artifact(&[b"two"]));
        images.put(1, "orders", "v1", &one).await.unwrap();
        images.put(1, "orders", "v1", &two).await.unwrap();
        assert_eq!(
            images
                .manifest(1, "orders", "v1")
                .await
                .unwrap()
                .unwrap()
                .digest,
            two.manifest.digest
        );
        // Deleting the first image leaves the tag that names the second.
        images
            .delete(1, "orders", "v1", &one.manifest.digest)
            .await
            .unwrap();
        assert_eq!(
            images
                .manifest(1, "orders", "v1")
                .await
                .unwrap()
                .unwrap()
                .digest,
            two.manifest.digest
        );
        assert!(
            images
                .blob(1, "orders", &two.layers[0].digest)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            images
                .blob(1, "orders", &one.layers[0].digest)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn untagging_leaves_a_tag_that_names_another_image() {
        let dir = tempfile::tempdir().unwrap();
        let images = images(dir.path());
        let (one, two) = (artifact(&[b"one"]), artifact(&[b"two"]));
        images.put(1, "orders", "v1", &one).await.unwrap();
        images.put(1, "orders", "v2", &one).await.unwrap();
        images
            .untag(1, "orders", "v1", &one.manifest.digest)
            .await
            .unwrap();
        assert_eq!(images.tags(1, "orders").await.unwrap().unwrap(), ["v2"]);
        images.put(1, "orders", "v2", &two).await.unwrap();
        images
            .untag(1, "orders", "v2", &one.manifest.digest)
            .await
            .unwrap();
        assert_eq!(
            images.tags(1, "orders").await.unwrap().unwrap(),
            ["v2"],
            "it names `two`"
        );
        // Deleting from a repository that is gone is absent, not an error.
        assert_eq!(
            images
                .delete(1, "gone", "v1", &one.manifest.digest)
                .await
                .unwrap(),
            Deleted::Absent
        );
    }

    #[tokio::test]
    async fn an_organisation_keeps_no_more_than_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let images = images(dir.path()).with_limit(3 << 20);
        let big = |b: u8| artifact(&[&vec![b; 1 << 20]]);
        images.put(1, "orders", "v1", &big(1)).await.unwrap();
        images.put(1, "orders", "v2", &big(2)).await.unwrap();
        let refused = images.put(1, "orders", "v3", &big(3)).await.unwrap_err();
        assert!(refused.to_string().contains("of the 3 MiB"), "{refused}");
        assert!(images.manifest(1, "orders", "v3").await.unwrap().is_none());
        // Another organisation has its own room; what is there already is free.
        images.put(2, "orders", "v3", &big(3)).await.unwrap();
        images.put(1, "other", "v1", &big(1)).await.unwrap();
        // Deleting frees it.
        let v1 = big(1).manifest.digest;
        images.delete(1, "orders", "v1", &v1).await.unwrap();
        images.delete(1, "other", "v1", &v1).await.unwrap();
        images.put(1, "orders", "v3", &big(3)).await.unwrap();
    }

    #[test]
    fn pull_passwords_read_one_organisation() {
        let dir = tempfile::tempdir().unwrap();
        let images = images(dir.path());
        let password = images.pull_password(7);
        assert_eq!(password.len(), 64);
        assert_eq!(images.pull_organisation(&password), Some(7));
        assert_eq!(images.pull_organisation("guess"), None);
        assert_ne!(images.pull_password(7), password);
    }
}
