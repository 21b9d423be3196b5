//! The typed reads and writes of WAL archive records (`wal/<id>`).

use arca_backend::FileKind;
use rayon::prelude::*;

use crate::data::compress;
use crate::error::{Error, Result};
use crate::format::wal::{object_id, WalRecord};
use crate::repository::Repository;

/// WAL records with the object name of each.
pub type WalRecords = Vec<(String, WalRecord)>;

impl Repository {
    /// Stores `record` under its name (cluster and file name), replacing
    /// any record of that name. Low level: takes no lock, and the blobs it
    /// names must be stored and indexed already.
    pub(crate) fn save_wal(&self, record: &WalRecord) -> Result<()> {
        let name = object_id(self.crypto(), &record.cluster, &record.name);
        let stored =
            self.crypto().seal(&compress::encode(&record.encode(), self.config().compression_level.max(1)));
        self.backend().put(FileKind::Wal, &name, &stored)?;
        Ok(())
    }

    /// The record of `name` in the archive of `cluster`, if there is one.
    pub(crate) fn load_wal(&self, cluster: &str, name: &str) -> Result<Option<WalRecord>> {
        let object = object_id(self.crypto(), cluster, name);
        match self.load_wal_object(&object) {
            Ok(r) => Ok(Some(r)),
            Err(Error::Backend(e)) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads `wal/<object>`, checking its seal and that it is the record
    /// its name says (a record moved to another name is damage).
    fn load_wal_object(&self, object: &str) -> Result<WalRecord> {
        let shown = self.object_name(FileKind::Wal, object);
        let stored = self.backend().get(FileKind::Wal, object)?;
        let plain = self.crypto().open(&stored).map_err(|e| Error::corrupt(&shown, e.to_string()))?;
        let plain = compress::decode(plain, &|| shown.clone())?;
        let record = WalRecord::decode(&plain, &shown)?;
        if object_id(self.crypto(), &record.cluster, &record.name) != object {
            return Err(Error::corrupt(
                &shown,
                "the record is not the one its name says (moved or replaced)",
            ));
        }
        Ok(record)
    }

    /// Every WAL record, with the object name of each; those that do not
    /// read are returned as errors beside them.
    pub fn wal_records_lenient(&self) -> Result<(WalRecords, Vec<Error>)> {
        let names = self.backend().list(FileKind::Wal)?;
        let loaded: Vec<Result<(String, WalRecord)>> =
            names.par_iter().map(|e| Ok((e.name.clone(), self.load_wal_object(&e.name)?))).collect();
        let mut records = Vec::new();
        let mut errors = Vec::new();
        for r in loaded {
            match r {
                Ok(r) => records.push(r),
                Err(e) => errors.push(e),
            }
        }
        records.sort_by(|a, b| (&a.1.cluster, &a.1.name).cmp(&(&b.1.cluster, &b.1.name)));
        Ok((records, errors))
    }
}
