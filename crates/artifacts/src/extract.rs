//! In-process tar extraction into a staging directory, validation, then placement by rename.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, FileTimes, Metadata, OpenOptions, Permissions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use crate::ArtifactError;
use crate::error::{LinkProblem, UnsafeReason};

/// Name prefix of the staging directory created inside the target directory.
pub const STAGING_PREFIX: &str = ".singularity-extract-";

/// Permission bits kept from the archive: rwx for all, and sticky; never setuid/setgid.
const MODE_MASK: u32 = 0o1777;
/// Mode of directories created for entries whose parents the archive does not list.
const IMPLICIT_DIR_MODE: u32 = 0o755;
/// Directories listed in the archive stay private until their own mode is applied at the end.
const STAGED_DIR_MODE: u32 = 0o700;
/// Header bytes (long names, pax records, sparse maps) allowed between two entries' data.
const HEADER_ALLOWANCE: u64 = 8 << 20;
/// Bytes allowed after the end-of-archive marker (record padding) before the gzip trailer.
const TRAILER_ALLOWANCE: u64 = 64 << 20;
/// Symlinks followed when resolving one link's target; the kernel gives up at 40 as well.
const MAX_LINK_HOPS: u32 = 40;

/// Bounds on what one archive may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Bytes of file content actually written (sparse holes count as written).
    pub max_total_bytes: u64,
    /// Archive entries of any kind.
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    /// Generous enough for any real deployable artifact: 32 GiB, one million entries.
    fn default() -> Self {
        ExtractLimits {
            max_total_bytes: 32 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// What an extraction produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Entries read, including skipped ones (the `./` root entry, pax global headers).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories created (or found in place).
    pub directories: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Hard links created.
    pub hard_links: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Extracts a gzip-compressed tar archive (`.tar.gz`, `.tgz`) into `target_dir`.
///
/// See the crate documentation for the rules; in short, either the whole archive is placed or
/// (barring a crash during the final renames) `target_dir` is left as it was.
pub fn extract_tar_gz(
    archive: &Path,
    target_dir: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractSummary, ArtifactError> {
    extract(archive, target_dir, limits, true)
}

/// Extracts an uncompressed tar archive into `target_dir`, with the same rules as
/// [`extract_tar_gz`].
pub fn extract_tar(
    archive: &Path,
    target_dir: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractSummary, ArtifactError> {
    extract(archive, target_dir, limits, false)
}

fn extract(
    archive: &Path,
    target_dir: &Path,
    limits: &ExtractLimits,
    gzip: bool,
) -> Result<ExtractSummary, ArtifactError> {
    let target_mtime = match fs::metadata(target_dir) {
        Ok(meta) if meta.is_dir() => meta.modified().ok(),
        _ => {
            return Err(ArtifactError::TargetDirMissing {
                path: target_dir.to_path_buf(),
            });
        }
    };
    let file = File::open(archive).map_err(|e| ArtifactError::io("open", archive, e))?;
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(target_dir)
        .map_err(|e| ArtifactError::io("create staging directory in", target_dir, e))?;

    let mut extraction = Extraction {
        archive,
        staging: staging.path(),
        target: target_dir,
        limits,
        known_dirs: HashSet::from([PathBuf::new()]),
        dir_meta: BTreeMap::new(),
        symlinks: BTreeMap::new(),
        summary: ExtractSummary::default(),
        buf: vec![0u8; 256 * 1024],
        touched_target: false,
    };
    let result = extraction.run(file, gzip);
    let touched_target = extraction.touched_target;
    // Whatever is left in staging (everything on failure, emptied directory shells on
    // success) goes; symlinks inside are removed, never followed.
    let cleanup = staging.close();
    // Creating and removing the staging directory touched the target's mtime. Unless an entry
    // was added directly to it (which would have changed it with tar too), put it back, so
    // that in particular a refused archive leaves no trace. Best effort: it is cosmetic.
    if !touched_target && let (Some(mtime), Ok(dir)) = (target_mtime, File::open(target_dir)) {
        let _ = dir.set_times(FileTimes::new().set_modified(mtime));
    }
    let summary = result?;
    cleanup.map_err(|e| ArtifactError::io("remove staging directory in", target_dir, e))?;
    Ok(summary)
}

/// Limits how much the tar parser may pull from the (decompressed) stream before the next
/// entry is handed out, so giant long-name or pax headers cannot exhaust memory.
struct BudgetReader<R> {
    inner: R,
    consumed: Rc<Cell<u64>>,
    allowed_until: Rc<Cell<u64>>,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for BudgetReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let consumed = self.consumed.get();
        let room = self.allowed_until.get().saturating_sub(consumed);
        if room == 0 && !buf.is_empty() {
            self.exceeded.set(true);
            return Err(io::Error::other("archive stream budget exceeded"));
        }
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.consumed.set(consumed + n as u64);
        Ok(n)
    }
}

#[derive(Clone)]
struct Budget {
    consumed: Rc<Cell<u64>>,
    allowed_until: Rc<Cell<u64>>,
    exceeded: Rc<Cell<bool>>,
}

impl Budget {
    fn new() -> Self {
        Budget {
            consumed: Rc::new(Cell::new(0)),
            allowed_until: Rc::new(Cell::new(HEADER_ALLOWANCE)),
            exceeded: Rc::new(Cell::new(false)),
        }
    }

    fn wrap<R: Read>(&self, inner: R) -> BudgetReader<R> {
        BudgetReader {
            inner,
            consumed: Rc::clone(&self.consumed),
            allowed_until: Rc::clone(&self.allowed_until),
            exceeded: Rc::clone(&self.exceeded),
        }
    }

    fn allow(&self, bytes: u64) {
        self.allowed_until
            .set(self.consumed.get().saturating_add(bytes));
    }
}

struct StagedLink {
    target: PathBuf,
    entry: String,
}

struct Extraction<'a> {
    archive: &'a Path,
    staging: &'a Path,
    target: &'a Path,
    limits: &'a ExtractLimits,
    /// Relative paths of the directories present in staging ("" is the staging root).
    known_dirs: HashSet<PathBuf>,
    /// Mode and mtime of the directories the archive lists, applied after placement.
    dir_meta: BTreeMap<PathBuf, (u32, u64)>,
    symlinks: BTreeMap<PathBuf, StagedLink>,
    summary: ExtractSummary,
    buf: Vec<u8>,
    /// Whether an entry was renamed directly into the target directory.
    touched_target: bool,
}

/// Where each staged top-level (or merged-into) entry goes.
struct Move {
    from: PathBuf,
    to: PathBuf,
    /// The destination is a non-directory that a directory replaces (rename cannot).
    remove_first: bool,
}

impl Extraction<'_> {
    fn run(&mut self, file: File, gzip: bool) -> Result<ExtractSummary, ArtifactError> {
        let budget = Budget::new();
        let reader = BufReader::with_capacity(256 * 1024, file);
        if gzip {
            let decoder = budget.wrap(MultiGzDecoder::new(reader));
            let mut decoder = self.stage_all(decoder, &budget)?;
            // Read to the end so the gzip CRC and length are checked.
            budget.allow(TRAILER_ALLOWANCE);
            io::copy(&mut decoder, &mut io::sink()).map_err(|e| {
                let source = if budget.exceeded.get() {
                    io::Error::other(format!(
                        "more than {TRAILER_ALLOWANCE} bytes after the end-of-archive marker"
                    ))
                } else {
                    e
                };
                ArtifactError::ReadArchive {
                    archive: self.archive.to_path_buf(),
                    source,
                }
            })?;
        } else {
            self.stage_all(budget.wrap(reader), &budget)?;
        }
        self.check_symlinks()?;
        let moves = self.plan_moves()?;
        self.apply_moves(&moves)?;
        self.apply_dir_meta()?;
        Ok(self.summary)
    }

    fn read_error(&self, budget: &Budget, source: io::Error) -> ArtifactError {
        if budget.exceeded.get() {
            ArtifactError::OversizedHeaders {
                archive: self.archive.to_path_buf(),
                count: self.summary.entries + 1,
                limit: HEADER_ALLOWANCE,
            }
        } else {
            ArtifactError::ReadArchive {
                archive: self.archive.to_path_buf(),
                source,
            }
        }
    }

    /// Extracts every entry into staging; hands the stream back for trailer checks.
    fn stage_all<R: Read>(&mut self, reader: R, budget: &Budget) -> Result<R, ArtifactError> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| self.read_error(budget, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.read_error(budget, e))?;
            self.summary.entries += 1;
            if self.summary.entries > self.limits.max_entries {
                return Err(ArtifactError::TooManyEntries {
                    archive: self.archive.to_path_buf(),
                    limit: self.limits.max_entries,
                });
            }
            // This entry's data (rounded up to whole blocks), then the next headers.
            budget.allow(
                entry
                    .size()
                    .saturating_add(511)
                    .saturating_add(HEADER_ALLOWANCE),
            );
            self.stage_entry(&mut entry, budget)?;
        }
        Ok(archive.into_inner())
    }

    fn stage_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        budget: &Budget,
    ) -> Result<(), ArtifactError> {
        let raw_path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        let entry_type = entry.header().entry_type();
        let kind = match entry_type {
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => return Ok(()),
            EntryType::Directory => Kind::Dir,
            // Pre-POSIX archives mark directories with a trailing slash only.
            EntryType::Regular if raw_path.ends_with(b"/") => Kind::Dir,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::HardLink,
            EntryType::Char => return Err(self.unsupported(name, "character device")),
            EntryType::Block => return Err(self.unsupported(name, "block device")),
            EntryType::Fifo => return Err(self.unsupported(name, "fifo")),
            _ => return Err(self.unsupported(name, "unknown type")),
        };
        let rel = relative_entry_path(&raw_path)
            .map_err(|reason| self.unsafe_entry(&name, UnsafeReason::Path(reason)))?;
        if rel.as_os_str().is_empty() {
            if kind == Kind::Dir {
                // `./`: the target directory itself. Its mode and owner are the executor's
                // business (it is the task sandbox), so the archive does not change them.
                return Ok(());
            }
            return Err(self.unsafe_entry(&name, UnsafeReason::TargetItself));
        }
        let header = entry.header();
        let mode = header.mode().map_err(|e| self.read_error(budget, e))? & MODE_MASK;
        let mtime = header.mtime().map_err(|e| self.read_error(budget, e))?;

        self.prepare_parents(&rel, &name)?;
        match kind {
            Kind::Dir => self.stage_dir(rel, &name, mode, mtime),
            Kind::File => self.stage_file(entry, rel, &name, mode, mtime, budget),
            Kind::Symlink => {
                let target = link_target(entry)
                    .ok_or_else(|| self.unsafe_entry(&name, UnsafeReason::SymlinkWithoutTarget))?;
                self.stage_symlink(rel, name, target, mtime)
            }
            Kind::HardLink => {
                let target = link_target(entry)
                    .ok_or_else(|| self.unsafe_entry(&name, UnsafeReason::HardLinkWithoutTarget))?;
                self.stage_hard_link(rel, &name, &target)
            }
        }
    }

    /// Creates the missing parents of `rel` in staging, refusing to go through anything but
    /// a directory made by this extraction (in particular never through a symlink).
    fn prepare_parents(&mut self, rel: &Path, name: &str) -> Result<(), ArtifactError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        if self.known_dirs.contains(parent) {
            return Ok(());
        }
        let mut prefix = PathBuf::new();
        for component in parent.components() {
            prefix.push(component);
            if self.known_dirs.contains(&prefix) {
                continue;
            }
            let path = self.staging.join(&prefix);
            match lstat(&path)? {
                None => {
                    DirBuilder::new()
                        .mode(IMPLICIT_DIR_MODE)
                        .create(&path)
                        .map_err(|e| ArtifactError::io("create directory", &path, e))?;
                }
                Some(meta) if meta.is_dir() => {}
                Some(meta) if meta.file_type().is_symlink() => {
                    return Err(self.unsafe_entry(
                        name,
                        UnsafeReason::ThroughSymlink {
                            link: prefix.to_path_buf(),
                        },
                    ));
                }
                Some(_) => {
                    return Err(self.conflict(
                        name,
                        &prefix,
                        "a file in the archive has this name",
                    ));
                }
            }
            self.known_dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// Makes room for a non-directory at `rel`: a later entry replaces an earlier one, as
    /// with tar, but a non-empty directory is never replaced.
    fn clear_slot(&mut self, rel: &Path, name: &str) -> Result<(), ArtifactError> {
        let path = self.staging.join(rel);
        match lstat(&path)? {
            None => {}
            Some(meta) if meta.is_dir() => {
                fs::remove_dir(&path).map_err(|_| {
                    self.conflict(
                        name,
                        rel,
                        "a non-empty directory in the archive has this name",
                    )
                })?;
                self.known_dirs.remove(rel);
                self.dir_meta.remove(rel);
            }
            Some(_) => {
                fs::remove_file(&path).map_err(|e| ArtifactError::io("remove", &path, e))?;
                self.symlinks.remove(rel);
            }
        }
        Ok(())
    }

    fn stage_dir(
        &mut self,
        rel: PathBuf,
        name: &str,
        mode: u32,
        mtime: u64,
    ) -> Result<(), ArtifactError> {
        if !self.known_dirs.contains(&rel) {
            let path = self.staging.join(&rel);
            if lstat(&path)?.is_some() {
                self.clear_slot(&rel, name)?;
            }
            DirBuilder::new()
                .mode(STAGED_DIR_MODE)
                .create(&path)
                .map_err(|e| ArtifactError::io("create directory", &path, e))?;
            self.known_dirs.insert(rel.clone());
        }
        self.dir_meta.insert(rel, (mode, mtime));
        self.summary.directories += 1;
        Ok(())
    }

    fn stage_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: PathBuf,
        name: &str,
        mode: u32,
        mtime: u64,
        budget: &Budget,
    ) -> Result<(), ArtifactError> {
        self.clear_slot(&rel, name)?;
        let path = self.staging.join(&rel);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| ArtifactError::io("create", &path, e))?;
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(budget, e)),
            };
            written += n as u64;
            self.summary.bytes += n as u64;
            if self.summary.bytes > self.limits.max_total_bytes {
                return Err(ArtifactError::TooLarge {
                    archive: self.archive.to_path_buf(),
                    entry: name.to_string(),
                    limit: self.limits.max_total_bytes,
                });
            }
            file.write_all(&self.buf[..n])
                .map_err(|e| ArtifactError::io("write", &path, e))?;
        }
        if written != entry.size() {
            return Err(ArtifactError::Truncated {
                archive: self.archive.to_path_buf(),
                entry: name.to_string(),
                expected: entry.size(),
                actual: written,
            });
        }
        file.set_times(FileTimes::new().set_modified(mtime_of(mtime)))
            .and_then(|()| file.set_permissions(Permissions::from_mode(mode)))
            .map_err(|e| ArtifactError::io("set mode and mtime of", &path, e))?;
        self.summary.files += 1;
        Ok(())
    }

    fn stage_symlink(
        &mut self,
        rel: PathBuf,
        name: String,
        target: PathBuf,
        mtime: u64,
    ) -> Result<(), ArtifactError> {
        // Cheap early refusal of the obvious escapes; links are checked again, against the
        // final tree, once every entry is staged.
        self.resolve_link(&rel, &name, &target, &Lexical)?;
        self.clear_slot(&rel, &name)?;
        let path = self.staging.join(&rel);
        std::os::unix::fs::symlink(&target, &path)
            .map_err(|e| ArtifactError::io("create symbolic link", &path, e))?;
        set_link_mtime(&path, mtime)?;
        self.symlinks.insert(
            rel,
            StagedLink {
                target,
                entry: name,
            },
        );
        self.summary.symlinks += 1;
        Ok(())
    }

    fn stage_hard_link(
        &mut self,
        rel: PathBuf,
        name: &str,
        target: &Path,
    ) -> Result<(), ArtifactError> {
        let target_rel = relative_entry_path(target.as_os_str().as_bytes())
            .map_err(|reason| self.unsafe_entry(name, UnsafeReason::HardLinkTarget(reason)))?;
        let through_dirs_only = target_rel
            .parent()
            .is_some_and(|parent| self.known_dirs.contains(parent));
        let is_staged_file = through_dirs_only
            && lstat(&self.staging.join(&target_rel))?.is_some_and(|meta| meta.is_file());
        if !is_staged_file {
            return Err(self.unsafe_entry(
                name,
                UnsafeReason::HardLinkNotStaged {
                    target: target.to_path_buf(),
                },
            ));
        }
        if target_rel != rel {
            self.clear_slot(&rel, name)?;
            let path = self.staging.join(&rel);
            fs::hard_link(self.staging.join(&target_rel), &path)
                .map_err(|e| ArtifactError::io("create hard link", &path, e))?;
        }
        self.summary.hard_links += 1;
        Ok(())
    }

    /// Checks every staged symlink against the tree as it will be once placed: staged entries
    /// over what `target_dir` already holds, following other symlinks on the way.
    fn check_symlinks(&self) -> Result<(), ArtifactError> {
        let view = Merged {
            staging: self.staging,
            target: self.target,
            staging_name: self.staging.file_name().unwrap_or_default(),
        };
        for (rel, link) in &self.symlinks {
            self.resolve_link(rel, &link.entry, &link.target, &view)?;
        }
        Ok(())
    }

    /// Refuses the link at `rel` unless `target`, resolved from the link's directory, stays
    /// inside the target directory at every step.
    fn resolve_link(
        &self,
        rel: &Path,
        name: &str,
        target: &Path,
        view: &dyn Lookup,
    ) -> Result<(), ArtifactError> {
        let refuse = |problem: LinkProblem| {
            self.unsafe_entry(
                name,
                UnsafeReason::SymlinkTarget {
                    target: target.to_path_buf(),
                    problem,
                },
            )
        };
        if target.as_os_str().is_empty() {
            return Err(refuse(LinkProblem::Empty));
        }
        let mut stack: Vec<OsString> = rel
            .parent()
            .map(|parent| parent.iter().map(OsStr::to_os_string).collect())
            .unwrap_or_default();
        let mut pending = VecDeque::new();
        self.expand(target, &mut stack, &mut pending)
            .map_err(|reason| refuse(LinkProblem::Path(reason)))?;
        let mut hops = 0;
        while let Some(step) = pending.pop_front() {
            match step {
                Step::Up => {
                    if stack.pop().is_none() {
                        return Err(refuse(LinkProblem::Outside));
                    }
                }
                Step::Name(component) => {
                    stack.push(component);
                    if let Node::Symlink(next) = view.lookup(&stack)? {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Err(refuse(LinkProblem::TooManyHops));
                        }
                        stack.pop();
                        self.expand(&next, &mut stack, &mut pending)
                            .map_err(|reason| {
                                refuse(LinkProblem::Through {
                                    link: next.clone(),
                                    problem: reason,
                                })
                            })?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Queues `target`'s components ahead of what is pending. An absolute target restarts
    /// from the target directory's root, and must lie under it.
    fn expand(
        &self,
        target: &Path,
        stack: &mut Vec<OsString>,
        pending: &mut VecDeque<Step>,
    ) -> Result<(), PathRefusal> {
        let relative = if target.is_absolute() {
            let inside = self
                .absolute_roots()
                .iter()
                .find_map(|root| target.strip_prefix(root).ok().map(Path::to_path_buf));
            let Some(inside) = inside else {
                return Err(PathRefusal::AbsoluteOutside);
            };
            stack.clear();
            inside
        } else {
            target.to_path_buf()
        };
        let steps: Vec<Step> = relative
            .components()
            .filter_map(|component| match component {
                Component::Normal(n) => Some(Step::Name(n.to_os_string())),
                Component::ParentDir => Some(Step::Up),
                _ => None,
            })
            .collect();
        for step in steps.into_iter().rev() {
            pending.push_front(step);
        }
        Ok(())
    }

    /// The target directory as given (made absolute) and canonical: an absolute link may
    /// use either spelling.
    fn absolute_roots(&self) -> Vec<PathBuf> {
        let mut roots = Vec::with_capacity(2);
        if let Ok(abs) = std::path::absolute(self.target) {
            roots.push(abs);
        }
        if let Ok(canonical) = fs::canonicalize(self.target)
            && !roots.contains(&canonical)
        {
            roots.push(canonical);
        }
        roots
    }

    /// Decides, before touching `target_dir`, where each staged entry goes; any conflict is
    /// found here, so a refused archive leaves `target_dir` unchanged.
    fn plan_moves(&self) -> Result<Vec<Move>, ArtifactError> {
        let mut moves = Vec::new();
        let staging_name = self.staging.file_name().unwrap_or_default();
        let mut queue = vec![PathBuf::new()];
        while let Some(dir) = queue.pop() {
            let staged_dir = self.staging.join(&dir);
            let mut children: Vec<OsString> = fs::read_dir(&staged_dir)
                .map_err(|e| ArtifactError::io("list", &staged_dir, e))?
                .map(|child| child.map(|c| c.file_name()))
                .collect::<Result<_, _>>()
                .map_err(|e| ArtifactError::io("list", &staged_dir, e))?;
            children.sort();
            for child in children {
                let rel = dir.join(&child);
                let entry = rel.to_string_lossy().into_owned();
                if dir.as_os_str().is_empty() && child == staging_name {
                    return Err(self.conflict(&entry, &rel, "the staging directory has this name"));
                }
                let from = self.staging.join(&rel);
                let to = self.target.join(&rel);
                let staged_is_dir = self.known_dirs.contains(&rel);
                let remove_first = match lstat(&to)? {
                    None => false,
                    Some(existing) if existing.is_dir() => {
                        if staged_is_dir {
                            queue.push(rel);
                            continue;
                        }
                        return Err(ArtifactError::Conflict {
                            archive: self.archive.to_path_buf(),
                            entry,
                            path: to,
                            reason: "a directory exists there",
                        });
                    }
                    // A directory cannot be renamed over a file or symlink; the existing
                    // one goes first. Existing symlinks are replaced, never followed.
                    Some(_) => staged_is_dir,
                };
                moves.push(Move {
                    from,
                    to,
                    remove_first,
                });
            }
        }
        Ok(moves)
    }

    /// The only step that changes `target_dir`. Each move is an atomic rename within one
    /// filesystem, but the sequence is not: a crash (or an I/O error) between two renames
    /// leaves the entries moved so far in place and the rest in the staging directory.
    fn apply_moves(&mut self, moves: &[Move]) -> Result<(), ArtifactError> {
        for step in moves {
            if step.to.parent() == Some(self.target) {
                self.touched_target = true;
            }
            if step.remove_first {
                match fs::remove_file(&step.to) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(ArtifactError::io("remove", &step.to, e)),
                }
            }
            fs::rename(&step.from, &step.to)
                .map_err(|e| ArtifactError::io("rename into place", &step.to, e))?;
        }
        Ok(())
    }

    /// Gives listed directories their archive mode and mtime, deepest first: placing their
    /// children changed the mtime, and a read-only mode would have blocked the placing.
    fn apply_dir_meta(&self) -> Result<(), ArtifactError> {
        for (rel, &(mode, mtime)) in self.dir_meta.iter().rev() {
            let path = self.target.join(rel);
            if !lstat(&path)?.is_some_and(|meta| meta.is_dir()) {
                continue;
            }
            let dir = File::open(&path).map_err(|e| ArtifactError::io("open", &path, e))?;
            dir.set_times(FileTimes::new().set_modified(mtime_of(mtime)))
                .and_then(|()| dir.set_permissions(Permissions::from_mode(mode)))
                .map_err(|e| ArtifactError::io("set mode and mtime of", &path, e))?;
        }
        Ok(())
    }

    fn unsafe_entry(&self, name: &str, reason: UnsafeReason) -> ArtifactError {
        ArtifactError::UnsafeEntry {
            archive: self.archive.to_path_buf(),
            entry: name.to_string(),
            reason,
        }
    }

    fn unsupported(&self, name: String, kind: &'static str) -> ArtifactError {
        ArtifactError::UnsupportedEntry {
            archive: self.archive.to_path_buf(),
            entry: name,
            kind,
        }
    }

    fn conflict(&self, name: &str, rel: &Path, reason: &'static str) -> ArtifactError {
        ArtifactError::Conflict {
            archive: self.archive.to_path_buf(),
            entry: name.to_string(),
            path: self.target.join(rel),
            reason,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    HardLink,
}

enum Step {
    Up,
    Name(OsString),
}

enum Node {
    Dir,
    Symlink(PathBuf),
    Other,
    Missing,
}

/// What a relative path names in some view of the tree.
trait Lookup {
    fn lookup(&self, rel: &[OsString]) -> Result<Node, ArtifactError>;
}

/// Knows nothing: resolution is purely lexical.
struct Lexical;

impl Lookup for Lexical {
    fn lookup(&self, _rel: &[OsString]) -> Result<Node, ArtifactError> {
        Ok(Node::Missing)
    }
}

/// The tree as it will be after placement: a staged entry hides what `target_dir` has at the
/// same path, except that two directories merge.
struct Merged<'a> {
    staging: &'a Path,
    target: &'a Path,
    staging_name: &'a OsStr,
}

impl Lookup for Merged<'_> {
    fn lookup(&self, rel: &[OsString]) -> Result<Node, ArtifactError> {
        let mut staged_path = self.staging.to_path_buf();
        let mut target_path = self.target.to_path_buf();
        let (mut in_staging, mut in_target) = (true, true);
        let mut node = Node::Dir;
        for (depth, component) in rel.iter().enumerate() {
            if !matches!(node, Node::Dir) {
                // Below a file or a missing name nothing resolves.
                return Ok(Node::Missing);
            }
            staged_path.push(component);
            target_path.push(component);
            let staged = if in_staging {
                lstat(&staged_path)?
            } else {
                None
            };
            let existing = if in_target && !(depth == 0 && component == self.staging_name) {
                lstat(&target_path)?
            } else {
                None
            };
            node = match (staged, existing) {
                (Some(s), existing) if s.is_dir() => {
                    in_target = existing.is_some_and(|e| e.is_dir());
                    Node::Dir
                }
                (Some(s), _) => node_of(&s, &staged_path)?,
                (None, Some(e)) => {
                    in_staging = false;
                    if e.is_dir() {
                        Node::Dir
                    } else {
                        node_of(&e, &target_path)?
                    }
                }
                (None, None) => Node::Missing,
            };
        }
        Ok(node)
    }
}

fn node_of(meta: &Metadata, path: &Path) -> Result<Node, ArtifactError> {
    if meta.file_type().is_symlink() {
        let target =
            fs::read_link(path).map_err(|e| ArtifactError::io("read symbolic link", path, e))?;
        Ok(Node::Symlink(target))
    } else {
        Ok(Node::Other)
    }
}

fn lstat(path: &Path) -> Result<Option<Metadata>, ArtifactError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ArtifactError::io("stat", path, e)),
    }
}

/// Why a path in an archive (an entry's, or a link's target) cannot be followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// A `..` component in an entry path.
    #[error("contains a `..` component")]
    ParentDir,
    /// An absolute entry path.
    #[error("is an absolute path")]
    Absolute,
    /// An absolute link target not under the target directory.
    #[error("is an absolute path outside the target directory")]
    AbsoluteOutside,
}

/// An archive entry's path relative to the directory it is extracted into, with `.`
/// components dropped; empty for the directory itself. Absolute paths and `..` components are
/// refused. Image layers are held to the same rule.
pub fn relative_entry_path(raw: &[u8]) -> Result<PathBuf, PathRefusal> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => rel.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathRefusal::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(PathRefusal::Absolute),
        }
    }
    Ok(rel)
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Option<PathBuf> {
    entry
        .link_name_bytes()
        .map(|bytes| PathBuf::from(OsStr::from_bytes(&bytes)))
}

/// Sets a symlink's own mtime (std has no lutimes).
fn set_link_mtime(path: &Path, seconds: u64) -> Result<(), ArtifactError> {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: i64::try_from(seconds).unwrap_or(i64::MAX),
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| ArtifactError::io("set mtime of", path, e.into()))
}

fn mtime_of(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}
