//! Physical backups of a PostgreSQL cluster, for point-in-time recovery:
//! a base backup (`pg_basebackup`, one tar streamed into the snapshot as
//! `/postgres/<cluster>/physical/base.tar`) that records the WAL it needs,
//! and a restore that writes a data folder set up to replay the archived
//! WAL (`arca pg fetch-wal`) up to a time, an LSN or a restore point.
//!
//! A base backup is kept only once the WAL that makes it consistent is in
//! the archive: it waits for `archive_command` to store the segments from
//! its start to its end, and fails if they do not come.

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use arca_core::ops::backup::{backup_streams_then, BackupOptions, BackupResult, Stream};
use arca_core::ops::wal::{format_lsn, parse_lsn, survey, ClusterArchive};
use arca_core::progress::Progress;
use arca_core::{BaseBackup, CommandOutput, Repository, Snapshot, SnapshotId};

use super::{pg_command, Url};

/// The file a base backup is stored as, below `/postgres/<cluster>/`.
pub const BASE_FOLDER: &str = "physical";
/// The tar `pg_basebackup` writes.
pub const BASE_FILE: &str = "base.tar";

/// How long a base backup waits for its WAL to be archived, unless told.
pub const DEFAULT_WAL_WAIT: Duration = Duration::from_secs(60);

/// `arca pg basebackup`: which server, which archive, how long to wait.
#[derive(Debug, Clone)]
pub struct BaseBackupOptions {
    /// The server (`postgresql://…`, a user with the REPLICATION attribute).
    pub url: String,
    /// The WAL archive it goes with (`arca pg archive-wal --cluster`).
    pub cluster: String,
    /// How long to wait for the WAL of the backup to be archived.
    pub wait: Duration,
}

/// Runs one SQL query with psql and returns its rows, fields split on `|`.
fn query(u: &Url, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let mut cmd = pg_command("psql", u);
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .arg(format!("--dbname={}", u.of("postgres")))
        .stdin(std::process::Stdio::null());
    let out = cmd.output().map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(format!("asking {} ({sql}): {}", u.shown(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect())
}

/// Reads `pg_basebackup`'s tar as it passes on its way into the
/// snapshot, keeping `backup_label` (where the WAL replay starts, on which
/// timeline) and the end of `backup_manifest` (where the backup ends).
struct TarWatch<R> {
    inner: R,
    /// Bytes of the current header block gathered so far.
    header: Vec<u8>,
    /// The member being passed: its name and bytes left (with padding).
    member: Option<(String, u64)>,
    label: String,
    manifest_tail: Vec<u8>,
    found: std::sync::Arc<std::sync::Mutex<(String, String)>>,
}

const MANIFEST_TAIL: usize = 64 << 10;

impl<R: Read> TarWatch<R> {
    fn new(inner: R) -> (Self, std::sync::Arc<std::sync::Mutex<(String, String)>>) {
        let found = std::sync::Arc::new(std::sync::Mutex::new((String::new(), String::new())));
        let w = TarWatch {
            inner,
            header: Vec::with_capacity(512),
            member: None,
            label: String::new(),
            manifest_tail: Vec::new(),
            found: found.clone(),
        };
        (w, found)
    }

    fn watch(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.member {
                Some((name, left)) => {
                    let n = (*left).min(bytes.len() as u64) as usize;
                    if name == "backup_label" && self.label.len() < 64 << 10 {
                        self.label.push_str(&String::from_utf8_lossy(&bytes[..n]));
                    } else if name == "backup_manifest" {
                        self.manifest_tail.extend_from_slice(&bytes[..n]);
                        let over = self.manifest_tail.len().saturating_sub(MANIFEST_TAIL);
                        self.manifest_tail.drain(..over);
                    }
                    *left -= n as u64;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.member = None;
                        let mut f = self.found.lock().unwrap_or_else(|p| p.into_inner());
                        f.0.clone_from(&self.label);
                        f.1 = String::from_utf8_lossy(&self.manifest_tail).into_owned();
                    }
                }
                None => {
                    let n = (512 - self.header.len()).min(bytes.len());
                    self.header.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if self.header.len() == 512 {
                        let h = std::mem::take(&mut self.header);
                        let field = |r: std::ops::Range<usize>| {
                            let f = &h[r];
                            String::from_utf8_lossy(&f[..f.iter().position(|b| *b == 0).unwrap_or(f.len())])
                                .into_owned()
                        };
                        let size = u64::from_str_radix(field(124..136).trim(), 8).unwrap_or(0);
                        let name = field(0..100);
                        // An all-zero block (the end) has no member.
                        if !name.is_empty() && size > 0 {
                            self.member = Some((name, size.div_ceil(512) * 512));
                        }
                    }
                }
            }
        }
    }
}

impl<R: Read> Read for TarWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.watch(&buf[..n]);
        Ok(n)
    }
}

/// Where the backup's WAL starts (LSN and timeline, from `backup_label`)
/// and ends (the manifest's `WAL-Ranges`).
fn wal_points(label: &str, manifest_tail: &str) -> Option<(u64, u32, u64)> {
    let field = |key: &str| label.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
    let start = parse_lsn(field("START WAL LOCATION:")?.split_whitespace().next()?).ok()?;
    let timeline = field("START TIMELINE:")?.parse().ok()?;
    let end = manifest_tail.rsplit("\"End-LSN\"").next().filter(|_| manifest_tail.contains("\"End-LSN\""))?;
    let end = end.split('"').nth(1)?;
    Some((start, timeline, parse_lsn(end).ok()?))
}

/// Takes a base backup of the server into a snapshot of
/// `/postgres/<cluster>/physical`, and keeps it only once the WAL from its
/// start to its end is in the archive of `cluster`.
pub fn basebackup(
    repo: &Repository,
    opts: &BackupOptions,
    b: &BaseBackupOptions,
    progress: &dyn Progress,
) -> Result<BackupResult, String> {
    arca_core::ops::wal::check_cluster_name(&b.cluster).map_err(|e| e.to_string())?;
    let u = Url::parse(&b.url)?;
    let rows = query(
        &u,
        "SELECT setting, current_setting('archive_mode') FROM pg_settings WHERE name = 'wal_segment_size'",
    )?;
    let (segment_size, archive_mode) = match rows.first().map(|r| r.as_slice()) {
        Some([size, mode]) => {
            (size.parse::<u64>().map_err(|_| format!("wal_segment_size {size:?}"))?, mode.clone())
        }
        _ => return Err(format!("{} did not say its wal_segment_size", u.shown())),
    };
    arca_core::ops::wal::check_segment_size(segment_size)
        .map_err(|e| format!("{} says its wal_segment_size is {segment_size}: {e}", u.shown()))?;
    if archive_mode == "off" {
        return Err(format!(
            "{} has archive_mode = off: its WAL is not archived, so a base backup could not be \
             restored. Set archive_mode = on and archive_command = 'arca pg archive-wal --cluster {} %p' \
             (docs/postgres.md), restart it, then take the base backup",
            u.shown(),
            b.cluster
        ));
    }
    let mut cmd = pg_command("pg_basebackup", &u);
    cmd.args(["--pgdata=-", "--format=tar", "--wal-method=none", "--checkpoint=fast", "--no-password"])
        .arg(format!("--dbname={}", u.of("postgres")));
    let shown = format!("pg_basebackup of {}", u.shown());
    let (out, said) = CommandOutput::start_capturing(cmd, shown).map_err(|e| e.to_string())?;
    let (watched, found) = TarWatch::new(out);
    let mut one = Some(watched);
    let mut next = || one.take().map(|o| Ok((BASE_FILE.to_string(), Stream::Owned(Box::new(o)))));
    let cluster = b.cluster.clone();
    let mut finish = |snap: &mut Snapshot| -> arca_core::Result<()> {
        let (label, manifest) = found.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (start, timeline, stop) = wal_points(&label, &manifest).ok_or_else(|| {
            let said = said.lock().unwrap_or_else(|p| p.into_inner()).clone();
            arca_core::Error::Invalid(format!(
                "the base backup's tar has no backup_label or backup_manifest telling where its WAL \
                 starts and ends (pg_basebackup said: {})",
                said.trim()
            ))
        })?;
        let base = BaseBackup {
            cluster: cluster.clone(),
            timeline,
            start_lsn: format_lsn(start),
            stop_lsn: format_lsn(stop),
            segment_size,
        };
        wait_for_wal(repo, &base, b.wait)?;
        snap.base_backup = Some(base);
        Ok(())
    };
    backup_streams_then(repo, opts, &["postgres", &b.cluster, BASE_FOLDER], &mut next, &mut finish, progress)
        .map_err(|e| e.report().to_string())
}

/// Waits until the archive holds every segment from `base`'s start to its
/// end, for up to `wait`.
fn wait_for_wal(repo: &Repository, base: &BaseBackup, wait: Duration) -> arca_core::Result<()> {
    let deadline = Instant::now() + wait;
    let names: Vec<String> = (base.start_segno()..=base.stop_segno())
        .map(|s| arca_core::ops::wal::segment_name(base.timeline, s, base.segment_size))
        .collect();
    let mut missing = names.clone();
    loop {
        let mut still = Vec::new();
        for n in missing {
            if !arca_core::ops::wal::is_archived(repo, &base.cluster, &n)? {
                still.push(n);
            }
        }
        missing = still;
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(arca_core::Error::Invalid(format!(
                "the base backup needs WAL segments {} to {} in the archive of cluster {:?}, and {} \
                 did not arrive within {} s: is archive_command set to `arca pg archive-wal --cluster {} %p` \
                 with this repository? (the server's log says why archiving fails)",
                names[0],
                names[names.len() - 1],
                base.cluster,
                missing.join(", "),
                wait.as_secs(),
                base.cluster
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Where a point-in-time recovery stops.
#[derive(Debug, Clone, PartialEq)]
pub enum RecoveryTarget {
    /// Replay every archived WAL file.
    Latest,
    /// Stop after the last transaction committed at or before this time.
    Time(chrono::DateTime<chrono::FixedOffset>),
    /// Stop at this WAL location.
    Lsn(u64),
    /// Stop at this restore point (`pg_create_restore_point`).
    Name(String),
}

/// What the server does once it reaches the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetAction {
    /// End recovery and accept writes (on a new timeline).
    #[default]
    Promote,
    /// Stay in recovery, read-only, for a person to inspect.
    Pause,
    /// Stop the server.
    Shutdown,
}

impl TargetAction {
    fn as_str(self) -> &'static str {
        match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

impl std::str::FromStr for TargetAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "promote" => Ok(TargetAction::Promote),
            "pause" => Ok(TargetAction::Pause),
            "shutdown" => Ok(TargetAction::Shutdown),
            _ => Err(format!("{s:?}: use promote, pause or shutdown")),
        }
    }
}

/// `arca pg restore`: which base backup, how far, where.
#[derive(Debug, Clone)]
pub struct PitrRestore {
    /// The cluster's archive (needed when the repository holds several).
    pub cluster: Option<String>,
    /// The base backup to start from (default: the latest that ends
    /// before the target).
    pub snapshot: Option<SnapshotId>,
    /// Where replay stops.
    pub target: RecoveryTarget,
    /// What the server does there.
    pub action: TargetAction,
    /// The data folder to write: absent or empty.
    pub datadir: PathBuf,
    /// Turn WAL archiving off in the restored server (a copy beside the
    /// original must not archive its new timeline into the original's
    /// archive).
    pub no_archive: bool,
}

/// What [`restore`] did: the PgRecovery shape of docs/json.md.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PgRecovery {
    /// The base backup restored (snapshot id).
    pub snapshot: String,
    /// When it was taken.
    pub snapshot_time: String,
    /// The cluster's archive.
    pub cluster: String,
    /// The data folder written.
    pub datadir: String,
    /// Where replay stops, as written to the configuration.
    pub target: String,
    /// What the server does there.
    pub target_action: String,
    /// The first WAL segment the recovery reads.
    pub wal_from: String,
    /// The newest WAL file in the archive.
    pub wal_archived_through: String,
    /// Bytes of the base backup written.
    pub bytes: u64,
}

/// The base backups of the repository, oldest first.
fn base_backups(repo: &Repository) -> Result<Vec<(SnapshotId, Snapshot)>, String> {
    let (snaps, _) = repo.snapshots_lenient().map_err(|e| e.report().to_string())?;
    Ok(snaps.into_iter().filter(|(_, s)| s.base_backup.is_some()).collect())
}

/// Chooses the base backup, checks that the archive holds every segment
/// the recovery replays, writes the data folder from the base backup and
/// sets it up to recover: `recovery.signal`, and `restore_command`, the
/// target and the action in `postgresql.auto.conf`. The server is not
/// started: its owner starts it, and it replays to the target.
/// `restore_command` makes the server's `restore_command` for the chosen
/// base backup's cluster (`arca pg fetch-wal … %f %p`).
pub fn restore(
    repo: &Repository,
    r: &PitrRestore,
    restore_command: &dyn Fn(&str) -> Result<String, String>,
) -> Result<PgRecovery, String> {
    let bases = base_backups(repo)?;
    let bases: Vec<&(SnapshotId, Snapshot)> = bases
        .iter()
        .filter(|(_, s)| {
            r.cluster.as_ref().is_none_or(|c| s.base_backup.as_ref().is_some_and(|b| &b.cluster == c))
        })
        .collect();
    let clusters: std::collections::BTreeSet<&str> =
        bases.iter().filter_map(|(_, s)| s.base_backup.as_ref()).map(|b| b.cluster.as_str()).collect();
    if clusters.len() > 1 {
        return Err(format!(
            "the repository holds base backups of several clusters ({}): give --cluster",
            clusters.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let (id, snap) = match &r.snapshot {
        Some(want) => {
            bases.iter().find(|(id, _)| id == want).map(|(i, s)| (*i, s.clone())).ok_or_else(|| {
                format!("snapshot {} is not a base backup (`arca pg basebackup`)", want.short())
            })?
        }
        None => {
            let fits = |s: &Snapshot| match &r.target {
                RecoveryTarget::Time(t) => s.timestamp() <= *t,
                RecoveryTarget::Lsn(l) => {
                    s.base_backup.as_ref().is_some_and(|b| parse_lsn(&b.stop_lsn).is_ok_and(|e| e <= *l))
                }
                RecoveryTarget::Latest | RecoveryTarget::Name(_) => true,
            };
            bases.iter().rev().find(|(_, s)| fits(s)).map(|(i, s)| (*i, s.clone())).ok_or_else(
                || match bases.first() {
                    None => "the repository holds no base backup (`arca pg basebackup`)".to_string(),
                    Some((_, s)) => {
                        format!("no base backup ends before the target: the oldest was taken {}", s.time)
                    }
                },
            )?
        }
    };
    let base = snap.base_backup.clone().expect("chosen among base backups");
    // The archive must hold every segment from the base backup's start to
    // the target: a hole is found here, not by a server that stops midway.
    let (records, unreadable) = repo.wal_records_lenient().map_err(|e| e.report().to_string())?;
    if let Some(e) = unreadable.first() {
        return Err(format!("the WAL archive has damaged records ({}): run `arca verify`", e.report()));
    }
    let records: Vec<arca_core::WalRecord> =
        records.into_iter().map(|(_, r)| r).filter(|rec| rec.cluster == base.cluster).collect();
    let archive: ClusterArchive = survey(&records, &[&base]).into_iter().next().expect("one cluster");
    let segno_of = |rec: &arca_core::WalRecord| {
        arca_core::ops::wal::FileName::parse(&rec.name)
            .ok()
            .filter(|n| matches!(n, arca_core::ops::wal::FileName::Segment { .. }))
            .and_then(|n| n.segno(base.segment_size))
    };
    let newest = records.iter().filter_map(|rec| Some((segno_of(rec)?, rec))).max_by_key(|(s, _)| *s);
    let Some((last_segno, last)) = newest else {
        return Err(format!("the archive of cluster {} holds no WAL segment", base.cluster));
    };
    let through = match &r.target {
        RecoveryTarget::Time(t) => {
            let after = records
                .iter()
                .filter(|rec| rec.timestamp() >= *t)
                .filter_map(segno_of)
                .filter(|s| *s >= base.start_segno())
                .min();
            match after {
                Some(s) => s,
                None => {
                    return Err(format!(
                        "the newest WAL segment of cluster {} ({}) was archived {}, before the target {}: \
                         the recovery could not reach it. Have the server archive its current segment \
                         (SELECT pg_switch_wal(), or archive_timeout) and try again",
                        base.cluster, last.name, last.time, t
                    ))
                }
            }
        }
        RecoveryTarget::Lsn(l) => {
            let s = l / arca_core::ops::wal::usable_segment_size(base.segment_size);
            if s > last_segno {
                return Err(format!(
                    "the archive of cluster {} ends with segment {}, before {}: the recovery could not reach it",
                    base.cluster,
                    last.name,
                    format_lsn(*l)
                ));
            }
            s
        }
        RecoveryTarget::Latest | RecoveryTarget::Name(_) => last_segno,
    };
    let blocking: Vec<String> = archive
        .gaps
        .iter()
        .filter(|g| g.segnos.0 <= through && g.segnos.1 >= base.start_segno())
        .map(|g| g.describe(&base.cluster))
        .collect();
    if !blocking.is_empty() {
        return Err(format!(
            "{}; restore from another base backup, or to an earlier target",
            blocking.join("; ")
        ));
    }
    let command = restore_command(&base.cluster)?;
    let bytes = write_datadir(repo, &snap, &base, &r.datadir)?;
    let target = configure(r, &base, &command)?;
    Ok(PgRecovery {
        snapshot: id.to_hex(),
        snapshot_time: snap.time.clone(),
        cluster: base.cluster.clone(),
        datadir: r.datadir.display().to_string(),
        target,
        target_action: r.action.as_str().into(),
        wal_from: archive.needed_from.unwrap_or_default(),
        wal_archived_through: last.name.clone(),
        bytes,
    })
}

/// Extracts the base backup's tar into `datadir` (absent, or an empty
/// folder), made 0700 as PostgreSQL requires. Entries are checked before
/// anything is written: a name that is absolute or climbs out with `..`
/// is refused, and no link is followed out of the folder.
fn write_datadir(
    repo: &Repository,
    snap: &Snapshot,
    base: &BaseBackup,
    datadir: &Path,
) -> Result<u64, String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::read_dir(datadir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} is not empty: give a new folder (or an empty one) for the data folder",
                    datadir.display()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(datadir).map_err(|e| format!("creating {}: {e}", datadir.display()))?;
        }
        Err(e) => return Err(format!("{}: {e}", datadir.display())),
    }
    std::fs::set_permissions(datadir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", datadir.display()))?;
    let index = repo.load_index().map_err(|e| e.report().to_string())?;
    let path = format!("/postgres/{}/{BASE_FOLDER}/{BASE_FILE}", base.cluster);
    let node = arca_core::ops::archive::find_node(repo, &index, &snap.tree, &path)
        .map_err(|e| e.report().to_string())?;
    let mut counted =
        Counted { inner: arca_core::ops::archive::ContentReader::new(repo, &index, &node.content), n: 0 };
    let owner = extract(&mut counted, datadir, &path)?;
    // Run as root, the folder itself goes to the server's user, as its files do.
    if let (true, Some((uid, gid))) = (rustix::process::geteuid().is_root(), owner) {
        std::os::unix::fs::chown(datadir, Some(uid), Some(gid))
            .map_err(|e| format!("{}: {e}", datadir.display()))?;
    }
    if owner.is_none() {
        return Err(format!("{path} holds no PG_VERSION: it is not a PostgreSQL data folder"));
    }
    Ok(counted.n)
}

/// Whether `p` stays below the folder it is taken from: relative, and no
/// `..` (nor anything else than plain names).
fn stays_inside(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Extracts the tar `reader` (shown as `shown`) into `datadir`: every
/// entry's name and every link's target must stay inside it (checked
/// before the entry is written; the first that does not stops the
/// extraction). Returns the owner of `PG_VERSION`.
fn extract(reader: impl Read, datadir: &Path, shown: &str) -> Result<Option<(u32, u32)>, String> {
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_preserve_ownerships(rustix::process::geteuid().is_root());
    tar.set_overwrite(false);
    let mut owner = None;
    for entry in tar.entries().map_err(|e| format!("reading {shown}: {e}"))? {
        let mut entry = entry.map_err(|e| format!("reading {shown}: {e}"))?;
        let name = entry.path().map_err(|e| format!("reading {shown}: {e}"))?.into_owned();
        if !stays_inside(&name) {
            return Err(format!(
                "{shown} holds an entry named {name:?}, outside the data folder: nothing more is written"
            ));
        }
        if let Some(target) = entry.link_name().map_err(|e| format!("reading {shown}: {e}"))? {
            if !stays_inside(&target) {
                return Err(format!(
                    "{shown} holds a link {name:?} to {target:?}, outside the data folder: nothing more is written"
                ));
            }
        }
        if name == Path::new("PG_VERSION") {
            owner =
                Some((entry.header().uid().unwrap_or(0) as u32, entry.header().gid().unwrap_or(0) as u32));
        }
        entry
            .unpack_in(datadir)
            .map_err(|e| format!("writing {} into {}: {e}", name.display(), datadir.display()))?;
    }
    Ok(owner)
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// A string as a postgresql.conf value: single-quoted, quotes doubled.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Writes `recovery.signal` and the recovery settings; returns the target
/// as configured.
fn configure(r: &PitrRestore, base: &BaseBackup, restore_command: &str) -> Result<String, String> {
    use std::io::Write;
    let (key, value) = match &r.target {
        RecoveryTarget::Latest => (None, "the end of the archive".to_string()),
        RecoveryTarget::Time(t) => {
            let utc = t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
            (Some("recovery_target_time"), utc)
        }
        RecoveryTarget::Lsn(l) => (Some("recovery_target_lsn"), format_lsn(*l)),
        RecoveryTarget::Name(n) => (Some("recovery_target_name"), n.clone()),
    };
    let mut lines = vec![
        String::new(),
        format!(
            "# Written by arca pg restore: recovery of cluster {} from base backup at {}",
            base.cluster, base.start_lsn
        ),
        format!("restore_command = {}", quoted(restore_command)),
        "recovery_target_timeline = 'latest'".to_string(),
    ];
    if r.no_archive {
        lines.push("archive_mode = 'off'".to_string());
    }
    if let Some(k) = key {
        lines.push(format!("{k} = {}", quoted(&value)));
        lines.push(format!("recovery_target_action = {}", quoted(r.action.as_str())));
    }
    let conf = r.datadir.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&conf)
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    f.write_all((lines.join("\n") + "\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    let signal = r.datadir.join("recovery.signal");
    std::fs::File::create(&signal).map_err(|e| format!("{}: {e}", signal.display()))?;
    if let Ok(meta) = std::fs::metadata(r.datadir.join("PG_VERSION")) {
        use std::os::unix::fs::MetadataExt;
        if rustix::process::geteuid().is_root() {
            for p in [&conf, &signal] {
                let _ = std::os::unix::fs::chown(p, Some(meta.uid()), Some(meta.gid()));
            }
        }
    }
    Ok(match key {
        Some(k) => format!("{k} = {value}"),
        None => value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tar_never_writes_outside_the_data_folder() {
        // Names and link targets written raw: the tar crate's own builder
        // refuses to make the hostile ones.
        fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
            let mut b = tar::Builder::new(Vec::new());
            for (name, kind, content) in entries {
                let mut h = tar::Header::new_old();
                let link = kind.is_symlink() || kind.is_hard_link();
                {
                    let old = h.as_old_mut();
                    old.name[..name.len()].copy_from_slice(name.as_bytes());
                    if link {
                        old.linkname[..content.len()].copy_from_slice(content.as_bytes());
                    }
                }
                h.set_entry_type(*kind);
                h.set_mode(0o700);
                h.set_uid(rustix::process::geteuid().as_raw().into());
                h.set_gid(rustix::process::getegid().as_raw().into());
                h.set_mtime(1);
                let data: &[u8] = if link { b"" } else { content.as_bytes() };
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, data).unwrap();
            }
            b.into_inner().unwrap()
        }
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let tmp = std::env::temp_dir().join(format!("arca-extract-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        for (i, bad) in [
            vec![("evil", Symlink, "/etc"), ("evil/passwd", Regular, "x")],
            vec![("evil", Symlink, "../outside"), ("evil/f", Regular, "x")],
            vec![("hard", Link, "/etc/hostname")],
            vec![("base/../../outside", Regular, "x")],
        ]
        .into_iter()
        .enumerate()
        {
            let dir = tmp.join(format!("d{i}/data"));
            std::fs::create_dir_all(&dir).unwrap();
            let e = extract(&tar_of(&bad)[..], &dir, "base.tar").unwrap_err();
            assert!(e.contains("outside the data folder"), "{e}");
            assert!(!tmp.join(format!("d{i}/outside")).exists());
        }
        let dir = tmp.join("good/data");
        std::fs::create_dir_all(&dir).unwrap();
        let good = tar_of(&[
            ("PG_VERSION", Regular, "15\n"),
            ("base/", Directory, ""),
            ("base/1", Regular, "rows"),
            ("latest", Symlink, "base/1"),
        ]);
        assert!(extract(&good[..], &dir, "base.tar").unwrap().is_some());
        assert_eq!(std::fs::read_to_string(dir.join("latest")).unwrap(), "rows");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn the_wal_of_a_base_backup_is_read_from_its_tar() {
        fn member(name: &str, body: &[u8]) -> Vec<u8> {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(body.len() as u64);
            h.set_cksum();
            let mut v = h.as_bytes().to_vec();
            v.extend_from_slice(body);
            v.resize(v.len().div_ceil(512) * 512, 0);
            v
        }
        let label = b"START WAL LOCATION: 0/5000028 (file 000000030000000000000005)\nCHECKPOINT LOCATION: 0/5000060\nSTART TIMELINE: 3\n";
        let manifest = br#"{"Files": [], "WAL-Ranges": [
{ "Timeline": 3, "Start-LSN": "0/5000028", "End-LSN": "1/A0000100" }
], "Manifest-Checksum": "x"}"#;
        let mut tar = member("PG_VERSION", b"15\n");
        tar.extend(member("backup_label", label));
        tar.extend(member("base/1/1259", &vec![7u8; 70_000]));
        tar.extend(member("backup_manifest", manifest));
        tar.extend([0u8; 1024]);
        let (mut w, found) = TarWatch::new(&tar[..]);
        // Read in odd pieces, as a pipe gives them.
        let mut buf = [0u8; 333];
        let mut total = 0;
        while let n @ 1.. = w.read(&mut buf).unwrap() {
            total += n;
        }
        assert_eq!(total, tar.len());
        let (l, m) = found.lock().unwrap().clone();
        assert_eq!(wal_points(&l, &m), Some((0x5000028, 3, 0x1_A000_0100)));
        assert_eq!(wal_points("", &m), None);
        assert_eq!(quoted("it's"), "'it''s'");
    }
}
