//! Showing one stored object as it is decoded, for debugging: the config,
//! a snapshot, an index file, a key file (without its sealed key), a lock,
//! a pack's header, a tree as JSON, or a blob's bytes.
//!
//! Reads one object and takes no lock: nothing it reads is changed, and an
//! object deleted meanwhile is an error naming it.

use serde_json::{json, Value};

use arca_backend::FileKind;

use crate::error::{Error, Result};
use crate::format::id::{BlobId, Id, TreeId};
use crate::format::index::Index;
use crate::format::keyfile::KeyFile;
use crate::format::lock::LockInfo;
use crate::format::pack::PackEntry;
use crate::format::tree::{Node, Timestamp};
use crate::repository::Repository;

/// An object to show, each (but the config) named by an id or a unique
/// prefix of at least 4 hex digits; a snapshot also by `latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Object {
    /// The repository's `config`.
    Config,
    /// A snapshot file.
    Snapshot(String),
    /// An index file.
    Index(String),
    /// A key file: its KDF parameters, host, user and dates; never the
    /// sealed key itself.
    Key(String),
    /// A lock file: who holds it, since when.
    Lock(String),
    /// A pack's header: the blobs it holds, where.
    Pack(String),
    /// A tree blob, decoded.
    Tree(String),
    /// A blob's plain bytes (a chunk of a file, or an encoded tree).
    Blob(String),
}

impl Object {
    /// The object `kind` (`config`, `snapshot`, `index`, `key`, `lock`,
    /// `pack`, `tree`, `blob`) named `id` (none for `config`).
    pub fn parse(kind: &str, id: Option<&str>) -> Result<Object> {
        let need = || {
            id.map(str::to_string).ok_or_else(|| {
                Error::Invalid(format!("`cat {kind}` needs the id (or a unique prefix) of the {kind}"))
            })
        };
        Ok(match kind {
            "config" => match id {
                None => Object::Config,
                Some(_) => {
                    return Err(Error::Invalid(
                        "`cat config` takes no id: a repository has one config".into(),
                    ))
                }
            },
            "snapshot" => Object::Snapshot(need()?),
            "index" => Object::Index(need()?),
            "key" => Object::Key(need()?),
            "lock" => Object::Lock(need()?),
            "pack" => Object::Pack(need()?),
            "tree" => Object::Tree(need()?),
            "blob" => Object::Blob(need()?),
            other => {
                return Err(Error::Invalid(format!(
                "unknown object type {other:?}: use config, snapshot, index, key, lock, pack, tree or blob"
            )))
            }
        })
    }
}

/// What [`cat`] shows: a JSON document, or (a blob) bytes. Exhaustive: a
/// caller handles both, and a new kind of object is one of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// The object decoded, as JSON.
    Json(Value),
    /// A blob's plain content.
    Bytes(Vec<u8>),
}

/// Reads and decodes `object` (trees and blobs are found through the
/// index, loaded for them).
pub fn cat(repo: &Repository, object: &Object) -> Result<Shown> {
    let json = Shown::Json;
    Ok(match object {
        Object::Config => json(serde_json::to_value(repo.config()).map_err(json_error)?),
        Object::Snapshot(spec) => {
            let (id, snap) = repo.find_snapshot(spec)?;
            let mut v = serde_json::to_value(&snap).map_err(json_error)?;
            v["id"] = id.to_hex().into();
            json(v)
        }
        Object::Index(prefix) => {
            let name = unique(repo, FileKind::Index, prefix)?;
            let file = repo.load_index_file(&parse_id(&name)?)?;
            let packs: Vec<Value> = file
                .packs
                .iter()
                .map(|p| json!({"id": p.id.to_hex(), "size": p.size, "blobs": entries(&p.blobs)}))
                .collect();
            let supersedes: Vec<String> = file.supersedes.iter().map(Id::to_hex).collect();
            json(json!({"id": name, "supersedes": supersedes, "packs": packs}))
        }
        Object::Key(prefix) => {
            let name = unique(repo, FileKind::Key, prefix)?;
            let object = repo.object_name(FileKind::Key, &name);
            let file = KeyFile::decode(&repo.backend().get(FileKind::Key, &name)?, &object)?;
            // The sealed master key stays out: sealed by a password it is
            // what a guesser needs, and with kdf "none" it is the key.
            let mut v = serde_json::to_value(&file).map_err(json_error)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("key");
                o.insert("id".into(), name.into());
            }
            json(v)
        }
        Object::Lock(prefix) => {
            let name = unique(repo, FileKind::Lock, prefix)?;
            let object = repo.object_name(FileKind::Lock, &name);
            let sealed = repo.backend().get(FileKind::Lock, &name)?;
            let plain = repo.crypto().open(&sealed).map_err(|e| Error::corrupt(&object, e.to_string()))?;
            let info: LockInfo =
                serde_json::from_slice(&plain).map_err(|e| Error::corrupt(&object, e.to_string()))?;
            let mut v = serde_json::to_value(&info).map_err(json_error)?;
            v["id"] = name.into();
            json(v)
        }
        Object::Pack(prefix) => {
            let name = unique(repo, FileKind::Pack, prefix)?;
            let size = repo
                .backend()
                .list(FileKind::Pack)?
                .into_iter()
                .find(|e| e.name == name)
                .map(|e| e.size)
                .ok_or_else(|| Error::Invalid(format!("pack {name} vanished while being read")))?;
            let blobs = repo.read_pack_header(&name, size)?;
            json(json!({"id": name, "size": size, "blobs": entries(&blobs)}))
        }
        Object::Tree(prefix) => {
            let index = repo.load_index()?;
            let id = TreeId(*blob(&index, prefix)?.id());
            let tree = repo.load_tree(&index, &id)?;
            let nodes: Vec<Value> = tree.nodes.iter().map(node).collect();
            json(json!({"id": id.to_hex(), "nodes": nodes}))
        }
        Object::Blob(prefix) => {
            let index = repo.load_index()?;
            let id = blob(&index, prefix)?;
            Shown::Bytes(repo.read_blob(&index, id)?)
        }
    })
}

fn json_error(e: serde_json::Error) -> Error {
    Error::Invalid(format!("showing the object as JSON: {e}"))
}

fn parse_id(name: &str) -> Result<Id> {
    Id::from_hex(name).ok_or_else(|| Error::Invalid(format!("{name:?} is not an object id")))
}

/// Checks a prefix: at least 4 hex digits, lowercased.
fn prefix_of(prefix: &str, what: &str) -> Result<String> {
    if prefix.len() < 4 || prefix.len() > 64 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "{prefix:?} is not a {what} id: give at least 4 hex digits of one"
        )));
    }
    Ok(prefix.to_ascii_lowercase())
}

/// The one stored object of `kind` whose name starts with `prefix`.
fn unique(repo: &Repository, kind: FileKind, prefix: &str) -> Result<String> {
    let what = kind.dir().trim_end_matches('s');
    let prefix = prefix_of(prefix, what)?;
    let mut found = repo.names_with_prefix(kind, &prefix)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::Invalid(format!("no {what} {prefix} in {}", repo.location()))),
        _ => Err(Error::Invalid(format!("{prefix} names more than one {what}: give more digits"))),
    }
}

/// The one blob of the index whose id starts with `prefix`.
fn blob(index: &Index, prefix: &str) -> Result<BlobId> {
    let prefix = prefix_of(prefix, "blob")?;
    if let Some(id) = Id::from_hex(&prefix) {
        return match index.contains(BlobId(id)) {
            true => Ok(BlobId(id)),
            false => Err(Error::Invalid(format!("no blob {prefix} in the index"))),
        };
    }
    let mut found = index.blobs().map(|(id, _)| id).filter(|id| id.to_hex().starts_with(&prefix));
    match (found.next(), found.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(Error::Invalid(format!("no blob {prefix} in the index"))),
        (Some(_), Some(_)) => {
            Err(Error::Invalid(format!("{prefix} names more than one blob: give more digits")))
        }
    }
}

fn entries(blobs: &[PackEntry]) -> Vec<Value> {
    blobs
        .iter()
        .map(|b| {
            json!({
                "id": b.id.to_hex(),
                "type": b.kind.name(),
                "offset": b.offset,
                "length": b.length,
                "raw_length": b.raw_length,
            })
        })
        .collect()
}

/// Bytes as text when they are UTF-8, else `None` (the hex form is then
/// given beside).
fn text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.into(),
        Err(_) => Value::Null,
    }
}

/// RFC 3339 in UTC to the nanosecond, as every time arca prints as JSON;
/// a time chrono cannot show (beyond year 262,143) as its seconds.
fn time(t: Timestamp) -> Value {
    match chrono::DateTime::from_timestamp(t.secs, t.nanos) {
        Some(d) => d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true).into(),
        None => json!({"secs": t.secs, "nanos": t.nanos}),
    }
}

/// A node with its names readable: `name` as text (`null` when the bytes
/// are not UTF-8) and `name_hex` always, so nothing is lost or guessed.
fn node(n: &Node) -> Value {
    let xattrs: Vec<Value> = n
        .xattrs
        .iter()
        .map(|x| json!({"name": text(&x.name), "name_hex": hex::encode(&x.name), "value_hex": hex::encode(&x.value)}))
        .collect();
    let content: Vec<String> = n.content.iter().map(|c| c.to_hex()).collect();
    json!({
        "name": text(&n.name),
        "name_hex": hex::encode(&n.name),
        "type": n.kind.name(),
        "mode": format!("{:04o}", n.mode),
        "uid": n.uid,
        "gid": n.gid,
        "user": n.user,
        "group": n.group,
        "mtime": time(n.mtime),
        "ctime": time(n.ctime),
        "size": n.size,
        "dev": n.dev,
        "inode": n.inode,
        "nlink": n.nlink,
        "rdev": n.rdev,
        "link_target": n.link_target.as_deref().map(text),
        "link_target_hex": n.link_target.as_deref().map(hex::encode),
        "xattrs": xattrs,
        "content": content,
        "subtree": n.subtree.map(|s| s.to_hex()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!(Object::parse("config", None).unwrap(), Object::Config);
        assert_eq!(Object::parse("tree", Some("abcd")).unwrap(), Object::Tree("abcd".into()));
        let e = Object::parse("tree", None).unwrap_err().to_string();
        assert!(e.contains("needs the id"), "{e}");
        let e = Object::parse("masterkey", Some("x")).unwrap_err().to_string();
        assert!(e.contains("\"masterkey\"") && e.contains("config, snapshot"), "{e}");
        let e = Object::parse("config", Some("abcd")).unwrap_err().to_string();
        assert!(e.contains("takes no id"), "{e}");
        assert!(prefix_of("abc", "pack").is_err() && prefix_of("xyz1", "pack").is_err());
        assert_eq!(prefix_of("ABCD", "pack").unwrap(), "abcd");
    }
}
