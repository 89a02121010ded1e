//! The node's crash-safe store: SQLite in WAL mode with `synchronous=FULL`, so a row is on disk
//! when a call returns. Sessions (their versioned snapshots), channels, every voucher, hot keys
//! and the outbox of one-shot chain actions live here. Callers persist before acknowledging.
//!
//! The schema carries a version (`PRAGMA user_version`); [`Store::open`] runs the migrations
//! that are missing, in one transaction each, and refuses a store newer than this program.

use std::path::{Path, PathBuf};

use alloy_primitives::{B256, U256};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = 3;

const MIGRATIONS: &[&str] = &[
    // v1
    r#"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE keys (
        name TEXT PRIMARY KEY,
        secret BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('seller', 'buyer')),
        channel_id TEXT,
        peer TEXT NOT NULL,
        counterparty TEXT NOT NULL,
        service INTEGER NOT NULL,
        snapshot BLOB,
        phase TEXT NOT NULL,
        ended INTEGER NOT NULL DEFAULT 0,
        end_reason TEXT,
        bytes INTEGER NOT NULL DEFAULT 0,
        paid_wei TEXT NOT NULL DEFAULT '0',
        owed_wei TEXT NOT NULL DEFAULT '0',
        seconds INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX sessions_channel ON sessions(channel_id);
    CREATE TABLE channels (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        seller TEXT NOT NULL,
        buyer TEXT NOT NULL,
        service INTEGER NOT NULL,
        deposit_wei TEXT NOT NULL,
        state TEXT NOT NULL,
        open_tx TEXT,
        to_seller_wei TEXT,
        to_buyer_wei TEXT,
        closes_at INTEGER,
        opened_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE vouchers (
        channel_id TEXT NOT NULL,
        amount_wei TEXT NOT NULL,
        amount_sort TEXT NOT NULL,
        signature BLOB NOT NULL,
        role TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (channel_id, amount_sort)
    );
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        tx_hash TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    "#,
    // v2: the reputation index (market events as folded, re-read near the head for reorgs)
    r#"
    CREATE TABLE market_events (
        block INTEGER NOT NULL,
        log_index INTEGER NOT NULL,
        event TEXT NOT NULL,
        PRIMARY KEY (block, log_index)
    );
    "#,
    // v3: the buyer's measurements of each tunnel run (JSON of `quality::Measurements`)
    r#"
    CREATE TABLE runs (
        session TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        seller TEXT NOT NULL,
        measurements TEXT NOT NULL,
        PRIMARY KEY (session, started_ms)
    );
    "#,
];

/// A store that could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("store {path}: {source} (check the disk and the file's permissions)")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The store was written by a newer Wayfare.
    #[error(
        "store {path} has schema version {found}, newer than this program's {SCHEMA_VERSION}: upgrade wayfare (never downgrade a store that holds vouchers)"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// A stored value does not parse.
    #[error("store {path}: corrupt value in {what}: {why}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Where.
        what: String,
        /// Why.
        why: String,
    },
}

/// A session row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// Local session id.
    pub id: String,
    /// `seller` or `buyer`.
    pub role: String,
    /// The channel, once known.
    pub channel_id: Option<B256>,
    /// The other side's libp2p peer id.
    pub peer: String,
    /// The other side's account.
    pub counterparty: String,
    /// The service code.
    pub service: u8,
    /// The last persisted snapshot (versioned bytes).
    #[serde(skip)]
    pub snapshot: Option<Vec<u8>>,
    /// The phase name.
    pub phase: String,
    /// Whether it is over.
    pub ended: bool,
    /// Why it ended.
    pub end_reason: Option<String>,
    /// Bytes metered.
    pub bytes: u64,
    /// The best / last voucher amount.
    pub paid_wei: U256,
    /// What this side's meter said was owed at the last write.
    pub owed_wei: U256,
    /// Seconds of service at the last write.
    pub seconds: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// A channel row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRow {
    /// Channel id.
    pub id: B256,
    /// `seller` or `buyer`: our side.
    pub role: String,
    /// Seller account.
    pub seller: String,
    /// Buyer account.
    pub buyer: String,
    /// Service code.
    pub service: u8,
    /// Deposit.
    pub deposit_wei: U256,
    /// `open`, `closing` or `closed`.
    pub state: String,
    /// The open transaction.
    pub open_tx: Option<String>,
    /// Credited to the seller at close.
    pub to_seller_wei: Option<U256>,
    /// Credited to the buyer at close.
    pub to_buyer_wei: Option<U256>,
    /// When a buyer-started close can be finalized.
    pub closes_at: Option<u64>,
    /// Unix seconds.
    pub opened_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

/// A one-shot chain action made durable before it is sent (settle, open, close…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRow {
    /// Row id.
    pub id: i64,
    /// The channel it is about.
    pub channel_id: B256,
    /// What to do (`settle`, `open`, `cooperative_close`, `start_close`, `finalize`, `top_up`).
    pub kind: String,
    /// Its arguments, JSON.
    pub payload: serde_json::Value,
    /// `pending`, `done` or `failed`.
    pub state: String,
    /// Tries so far.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
    /// The mined transaction.
    pub tx_hash: Option<String>,
}

/// The store. One connection, used from one task at a time (wrap it in a mutex to share).
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn u256_text(v: U256) -> String {
    v.to_string()
}

fn sort_key(v: U256) -> String {
    format!("{v:0>78}")
}

impl Store {
    /// Opens (or creates) the store at `path` with mode 0600, WAL and `synchronous=FULL`, and
    /// migrates it to [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let mut store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: &str, why: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            why: why.to_string(),
        }
    }

    /// The schema version on disk.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = i as i64 + 1;
            let tx = self.conn.transaction().map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
            tx.execute_batch(sql)
                .and_then(|()| tx.pragma_update(None, "user_version", version))
                .and_then(|()| tx.commit())
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    source: e,
                })?;
            tracing::info!(store = %self.path.display(), version, "store migrated");
        }
        Ok(())
    }

    /// Runs `f` as one transaction: its writes land together (one sync to disk) or, when it
    /// fails, none of them does.
    pub fn atomically<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        let out = f(self)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    // ------------------------------------------------------------------ meta

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Sets a metadata value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    // ------------------------------------------------------------------ keys

    /// Stores a secret key under `name` (never overwrites one).
    pub fn put_key(&self, name: &str, secret: &[u8], now: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO keys(name, secret, created_at) VALUES (?1, ?2, ?3)",
                params![name, secret, now as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Stores a secret key under `name`, replacing an older one (keys that are rotated, such
    /// as a session's WireGuard key on a reconnect).
    pub fn replace_key(&self, name: &str, secret: &[u8], now: u64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO keys(name, secret, created_at) VALUES (?1, ?2, ?3)",
                params![name, secret, now as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// A stored secret key.
    pub fn key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row("SELECT secret FROM keys WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    // ------------------------------------------------------------------ sessions

    /// Inserts or replaces a session row (snapshot included) in one durable write.
    pub fn put_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO sessions(id, role, channel_id, peer, counterparty, service, snapshot,
                    phase, ended, end_reason, bytes, paid_wei, owed_wei, seconds, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT(id) DO UPDATE SET channel_id = excluded.channel_id,
                    peer = excluded.peer, snapshot = COALESCE(excluded.snapshot, snapshot),
                    phase = excluded.phase, ended = excluded.ended,
                    end_reason = excluded.end_reason, bytes = excluded.bytes,
                    paid_wei = excluded.paid_wei, owed_wei = excluded.owed_wei,
                    seconds = excluded.seconds, updated_at = excluded.updated_at",
                params![
                    s.id,
                    s.role,
                    s.channel_id.map(|c| c.to_string()),
                    s.peer,
                    s.counterparty,
                    s.service,
                    s.snapshot,
                    s.phase,
                    s.ended,
                    s.end_reason,
                    s.bytes as i64,
                    u256_text(s.paid_wei),
                    u256_text(s.owed_wei),
                    s.seconds as i64,
                    s.created_at as i64,
                    s.updated_at as i64,
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn session_from_row(&self, r: &rusqlite::Row<'_>) -> Result<SessionRow, StoreError> {
        let get = |i: usize| -> Result<rusqlite::types::Value, StoreError> {
            r.get::<_, rusqlite::types::Value>(i)
                .map_err(|e| self.err(e))
        };
        let text = |i: usize| -> Result<Option<String>, StoreError> {
            match get(i)? {
                rusqlite::types::Value::Text(t) => Ok(Some(t)),
                rusqlite::types::Value::Null => Ok(None),
                other => Err(self.corrupt("sessions", format!("column {i}: {other:?}"))),
            }
        };
        let int = |i: usize| -> Result<i64, StoreError> {
            match get(i)? {
                rusqlite::types::Value::Integer(n) => Ok(n),
                other => Err(self.corrupt("sessions", format!("column {i}: {other:?}"))),
            }
        };
        let channel_id = match text(2)? {
            Some(t) => Some(
                t.parse::<B256>()
                    .map_err(|e| self.corrupt("sessions.channel_id", e))?,
            ),
            None => None,
        };
        let snapshot = match get(6)? {
            rusqlite::types::Value::Blob(b) => Some(b),
            _ => None,
        };
        Ok(SessionRow {
            id: text(0)?.unwrap_or_default(),
            role: text(1)?.unwrap_or_default(),
            channel_id,
            peer: text(3)?.unwrap_or_default(),
            counterparty: text(4)?.unwrap_or_default(),
            service: u8::try_from(int(5)?).map_err(|e| self.corrupt("sessions.service", e))?,
            snapshot,
            phase: text(7)?.unwrap_or_default(),
            ended: int(8)? != 0,
            end_reason: text(9)?,
            bytes: int(10)? as u64,
            paid_wei: text(11)?
                .unwrap_or_default()
                .parse()
                .map_err(|e| self.corrupt("sessions.paid_wei", e))?,
            owed_wei: text(12)?
                .unwrap_or_default()
                .parse()
                .map_err(|e| self.corrupt("sessions.owed_wei", e))?,
            seconds: int(13)? as u64,
            created_at: int(14)? as u64,
            updated_at: int(15)? as u64,
        })
    }

    const SESSION_COLS: &'static str = "id, role, channel_id, peer, counterparty, service, \
        snapshot, phase, ended, end_reason, bytes, paid_wei, owed_wei, seconds, created_at, updated_at";

    fn query_sessions(
        &self,
        where_: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<SessionRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM sessions {where_} ORDER BY created_at, id",
            Self::SESSION_COLS
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut rows = stmt.query(args).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            out.push(self.session_from_row(r)?);
        }
        Ok(out)
    }

    /// Sessions of `role` that have not ended, oldest first.
    pub fn live_sessions(&self, role: &str) -> Result<Vec<SessionRow>, StoreError> {
        self.query_sessions("WHERE role = ?1 AND ended = 0", &[&role])
    }

    /// Every session of `role`, oldest first.
    pub fn sessions(&self, role: &str) -> Result<Vec<SessionRow>, StoreError> {
        self.query_sessions("WHERE role = ?1", &[&role])
    }

    /// The session of `role` on a channel (the latest).
    pub fn session_by_channel(
        &self,
        role: &str,
        channel: B256,
    ) -> Result<Option<SessionRow>, StoreError> {
        Ok(self
            .query_sessions(
                "WHERE role = ?1 AND channel_id = ?2",
                &[&role, &channel.to_string()],
            )?
            .pop())
    }

    /// One session.
    pub fn session(&self, id: &str) -> Result<Option<SessionRow>, StoreError> {
        Ok(self
            .query_sessions("WHERE id = ?1", &[&id])?
            .into_iter()
            .next())
    }

    // ------------------------------------------------------------------ vouchers

    /// Records a voucher (idempotent for the same channel and amount).
    pub fn put_voucher(
        &self,
        channel_id: B256,
        amount: U256,
        signature: &[u8],
        role: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO vouchers(channel_id, amount_wei, amount_sort, signature, role, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    channel_id.to_string(),
                    u256_text(amount),
                    sort_key(amount),
                    signature,
                    role,
                    now as i64
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The highest voucher stored for a channel: (amount, signature).
    pub fn best_voucher(&self, channel_id: B256) -> Result<Option<(U256, Vec<u8>)>, StoreError> {
        let row: Option<(String, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT amount_wei, signature FROM vouchers WHERE channel_id = ?1
                 ORDER BY amount_sort DESC LIMIT 1",
                [channel_id.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match row {
            Some((a, s)) => Ok(Some((
                a.parse().map_err(|e| self.corrupt("vouchers.amount", e))?,
                s,
            ))),
            None => Ok(None),
        }
    }

    /// Number of vouchers stored for a channel.
    pub fn voucher_count(&self, channel_id: B256) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM vouchers WHERE channel_id = ?1",
                [channel_id.to_string()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    // ------------------------------------------------------------------ channels

    /// Inserts a channel or updates its mutable fields.
    pub fn put_channel(&self, c: &ChannelRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO channels(id, role, seller, buyer, service, deposit_wei, state, open_tx,
                    to_seller_wei, to_buyer_wei, closes_at, opened_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT(id) DO UPDATE SET deposit_wei = excluded.deposit_wei,
                    state = excluded.state, open_tx = COALESCE(excluded.open_tx, open_tx),
                    to_seller_wei = COALESCE(excluded.to_seller_wei, to_seller_wei),
                    to_buyer_wei = COALESCE(excluded.to_buyer_wei, to_buyer_wei),
                    closes_at = COALESCE(excluded.closes_at, closes_at),
                    updated_at = excluded.updated_at",
                params![
                    c.id.to_string(),
                    c.role,
                    c.seller,
                    c.buyer,
                    c.service,
                    u256_text(c.deposit_wei),
                    c.state,
                    c.open_tx,
                    c.to_seller_wei.map(u256_text),
                    c.to_buyer_wei.map(u256_text),
                    c.closes_at.map(|t| t as i64),
                    c.opened_at as i64,
                    c.updated_at as i64,
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// One channel.
    pub fn channel(&self, id: B256) -> Result<Option<ChannelRow>, StoreError> {
        Ok(self
            .query_channels("WHERE id = ?1", &[&id.to_string()])?
            .into_iter()
            .next())
    }

    /// Every channel, oldest first.
    pub fn channels(&self) -> Result<Vec<ChannelRow>, StoreError> {
        self.query_channels("", &[])
    }

    fn query_channels(
        &self,
        where_: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ChannelRow>, StoreError> {
        let sql = format!(
            "SELECT id, role, seller, buyer, service, deposit_wei, state, open_tx, to_seller_wei,
                to_buyer_wei, closes_at, opened_at, updated_at FROM channels {where_}
             ORDER BY opened_at, id"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        type Raw = (
            String,
            String,
            String,
            String,
            i64,
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            i64,
            i64,
        );
        let rows: Vec<Raw> = stmt
            .query_map(args, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                    r.get(11)?,
                    r.get(12)?,
                ))
            })
            .and_then(|it| it.collect())
            .map_err(|e| self.err(e))?;
        let amount = |s: &str| -> Result<U256, StoreError> {
            s.parse().map_err(|e| self.corrupt("channels amount", e))
        };
        rows.into_iter()
            .map(|r| {
                Ok(ChannelRow {
                    id: r.0.parse().map_err(|e| self.corrupt("channels.id", e))?,
                    role: r.1,
                    seller: r.2,
                    buyer: r.3,
                    service: r.4 as u8,
                    deposit_wei: amount(&r.5)?,
                    state: r.6,
                    open_tx: r.7,
                    to_seller_wei: r.8.as_deref().map(amount).transpose()?,
                    to_buyer_wei: r.9.as_deref().map(amount).transpose()?,
                    closes_at: r.10.map(|t| t as u64),
                    opened_at: r.11 as u64,
                    updated_at: r.12 as u64,
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------ market events

    /// Stores what the index read of blocks `from..next`: replaces the stored events of those
    /// blocks and records `next` as the index cursor (`index_next_block`), in one transaction.
    /// Returns whether an event stored before is gone (a reorg changed history).
    pub fn replace_market_events(
        &mut self,
        from: u64,
        next: u64,
        events: &[(u64, u64, String)],
    ) -> Result<bool, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        // A re-read that changes nothing writes nothing (a write is a sync to disk).
        let cursor = self.meta("index_next_block")?;
        let tx = self.conn.transaction().map_err(err)?;
        let old: Vec<(u64, u64, String)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT block, log_index, event FROM market_events
                     WHERE block >= ?1 AND block < ?2",
                )
                .map_err(err)?;
            stmt.query_map([from as i64, next as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get(2)?,
                ))
            })
            .and_then(|it| it.collect())
            .map_err(err)?
        };
        let new: std::collections::HashSet<&(u64, u64, String)> = events.iter().collect();
        let changed = old.len() != events.len() || old.iter().any(|o| !new.contains(o));
        if !changed && cursor.as_deref() == Some(next.to_string().as_str()) {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM market_events WHERE block >= ?1 AND block < ?2",
            [from as i64, next as i64],
        )
        .map_err(err)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT OR REPLACE INTO market_events(block, log_index, event) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for (b, i, e) in events {
                insert
                    .execute(params![*b as i64, *i as i64, e])
                    .map_err(err)?;
            }
        }
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('index_next_block', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [next.to_string()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(old.iter().any(|o| !new.contains(o)))
    }

    /// Every indexed event (block, log index, event JSON), in chain order.
    pub fn market_events(&self) -> Result<Vec<(u64, u64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT block, log_index, event FROM market_events ORDER BY block, log_index")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get(2)?,
            ))
        })
        .and_then(|it| it.collect())
        .map_err(|e| self.err(e))
    }

    // ------------------------------------------------------------------ runs

    /// Records (or updates) what a buyer's tunnel run measured.
    pub fn put_run(
        &self,
        session: &str,
        started_ms: u64,
        seller: &str,
        m: &crate::quality::Measurements,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(m).unwrap_or_default();
        self.conn
            .execute(
                "INSERT INTO runs(session, started_ms, seller, measurements) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(session, started_ms) DO UPDATE SET measurements = excluded.measurements",
                params![session, started_ms as i64, seller, json],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Every recorded run as `(session, seller, measurements)`, oldest first (unreadable rows
    /// are skipped with a warning).
    pub fn runs(&self) -> Result<Vec<(String, String, crate::quality::Measurements)>, StoreError> {
        self.runs_where(None)
    }

    /// The recorded runs of one session, oldest first.
    pub fn runs_of(&self, session: &str) -> Result<Vec<crate::quality::Measurements>, StoreError> {
        Ok(self
            .runs_where(Some(session))?
            .into_iter()
            .map(|(_, _, m)| m)
            .collect())
    }

    fn runs_where(
        &self,
        session: Option<&str>,
    ) -> Result<Vec<(String, String, crate::quality::Measurements)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT session, seller, measurements FROM runs
                 WHERE ?1 IS NULL OR session = ?1 ORDER BY started_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, String, String)> = stmt
            .query_map([session], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|it| it.collect())
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, seller, j)| match serde_json::from_str(&j) {
                Ok(m) => Some((s, seller, m)),
                Err(e) => {
                    tracing::warn!(session = s, error = %e, "unreadable run measurements skipped");
                    None
                }
            })
            .collect())
    }

    // ------------------------------------------------------------------ actions

    /// Makes an action durable before it is sent; returns its id.
    pub fn add_action(
        &self,
        channel_id: B256,
        kind: &str,
        payload: &serde_json::Value,
        now: u64,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO actions(channel_id, kind, payload, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![
                    channel_id.to_string(),
                    kind,
                    payload.to_string(),
                    now as i64
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records an attempt's outcome: `state` is `pending` (retry), `done` or `failed`.
    pub fn update_action(
        &self,
        id: i64,
        state: &str,
        error: Option<&str>,
        tx_hash: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE actions SET state = ?2, attempts = attempts + 1,
                    last_error = COALESCE(?3, last_error), tx_hash = COALESCE(?4, tx_hash),
                    updated_at = ?5 WHERE id = ?1",
                params![id, state, error, tx_hash, now as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Actions not yet done, oldest first.
    pub fn pending_actions(&self) -> Result<Vec<ActionRow>, StoreError> {
        self.query_actions("WHERE state = 'pending'", &[])
    }

    /// Every action of a channel, oldest first.
    pub fn actions(&self, channel_id: B256) -> Result<Vec<ActionRow>, StoreError> {
        self.query_actions("WHERE channel_id = ?1", &[&channel_id.to_string()])
    }

    fn query_actions(
        &self,
        where_: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<ActionRow>, StoreError> {
        let sql = format!(
            "SELECT id, channel_id, kind, payload, state, attempts, last_error, tx_hash
             FROM actions {where_} ORDER BY id"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        type Raw = (
            i64,
            String,
            String,
            String,
            String,
            i64,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Raw> = stmt
            .query_map(args, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .and_then(|it| it.collect())
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|r| {
                Ok(ActionRow {
                    id: r.0,
                    channel_id: r
                        .1
                        .parse()
                        .map_err(|e| self.corrupt("actions.channel", e))?,
                    kind: r.2,
                    payload: serde_json::from_str(&r.3)
                        .map_err(|e| self.corrupt("actions.payload", e))?,
                    state: r.4,
                    attempts: r.5 as u32,
                    last_error: r.6,
                    tx_hash: r.7,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> SessionRow {
        SessionRow {
            id: id.into(),
            role: "seller".into(),
            channel_id: Some(B256::repeat_byte(7)),
            peer: "peer".into(),
            counterparty: "0xabc".into(),
            service: 2,
            snapshot: Some(vec![1, 2, 3]),
            phase: "serving".into(),
            ended: false,
            end_reason: None,
            bytes: 10,
            paid_wei: U256::from(5u8),
            owed_wei: U256::from(6u8),
            seconds: 3,
            created_at: 1,
            updated_at: 2,
        }
    }

    #[test]
    fn sessions_survive_reopen_and_keep_their_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        {
            let s = Store::open(&path).unwrap();
            s.put_session(&row("a")).unwrap();
            let mut b = row("b");
            b.ended = true;
            s.put_session(&b).unwrap();
            // An update without a snapshot keeps the stored one.
            let mut a2 = row("a");
            a2.snapshot = None;
            a2.bytes = 99;
            s.put_session(&a2).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let live = s.live_sessions("seller").unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].snapshot.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(live[0].bytes, 99);
        assert_eq!(s.sessions("seller").unwrap().len(), 2);
    }

    #[test]
    fn best_voucher_is_the_highest_amount_not_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("node.db")).unwrap();
        let c = B256::repeat_byte(1);
        s.put_voucher(c, U256::from(900u32), &[9; 65], "seller", 1)
            .unwrap();
        s.put_voucher(c, U256::from(10_000u32), &[1; 65], "seller", 2)
            .unwrap();
        s.put_voucher(c, U256::from(5_000u32), &[5; 65], "seller", 3)
            .unwrap();
        s.put_voucher(c, U256::from(5_000u32), &[5; 65], "seller", 3)
            .unwrap();
        let (amount, sig) = s.best_voucher(c).unwrap().unwrap();
        assert_eq!(amount, U256::from(10_000u32));
        assert_eq!(sig, vec![1; 65]);
        assert_eq!(s.voucher_count(c).unwrap(), 3);
    }

    #[test]
    fn actions_stay_pending_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("node.db")).unwrap();
        let c = B256::repeat_byte(2);
        let id = s
            .add_action(c, "settle", &serde_json::json!({"amount": "5"}), 1)
            .unwrap();
        s.update_action(id, "pending", Some("rpc down"), None, 2)
            .unwrap();
        let p = s.pending_actions().unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].attempts, 1);
        assert_eq!(p[0].last_error.as_deref(), Some("rpc down"));
        s.update_action(id, "done", None, Some("0x01"), 3).unwrap();
        assert!(s.pending_actions().unwrap().is_empty());
        assert_eq!(s.actions(c).unwrap()[0].tx_hash.as_deref(), Some("0x01"));
    }

    #[test]
    fn a_version_1_store_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO keys(name, secret, created_at) VALUES ('voucher:x', x'01', 1)",
                [],
            )
            .unwrap();
        }
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.key("voucher:x").unwrap(), Some(vec![1]), "a key was lost");
        s.replace_market_events(0, 2, &[(1, 0, "{}".into())])
            .unwrap();
        assert_eq!(s.meta("index_next_block").unwrap().as_deref(), Some("2"));
        assert_eq!(s.market_events().unwrap().len(), 1);
        let mut m = crate::quality::Measurements::default();
        m.on_meter(0, 1, 2);
        s.put_run("s1", 5, "0xab", &m).unwrap();
        s.put_run("s1", 5, "0xab", &m).unwrap();
        let runs = s.runs().unwrap();
        assert_eq!(runs.len(), 1, "a run was recorded twice");
        assert_eq!(runs[0].2.down, 2);
        assert_eq!(s.runs_of("s1").unwrap().len(), 1);
        assert!(s.runs_of("s2").unwrap().is_empty());
    }

    #[test]
    fn an_index_re_read_that_changes_nothing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("node.db")).unwrap();
        let rows = vec![(5, 0, "{\"a\":1}".to_string()), (6, 1, "{}".to_string())];
        assert!(!s.replace_market_events(0, 10, &rows).unwrap());
        let before = s.conn.total_changes();
        assert!(!s.replace_market_events(3, 10, &rows).unwrap());
        assert_eq!(
            s.conn.total_changes(),
            before,
            "an unchanged re-read was written"
        );
        // A new cursor is written; a changed event is a reorg.
        assert!(!s.replace_market_events(3, 11, &rows).unwrap());
        assert_eq!(s.meta("index_next_block").unwrap().as_deref(), Some("11"));
        assert!(s.replace_market_events(3, 11, &rows[..1]).unwrap());
    }

    #[test]
    fn atomically_writes_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("node.db")).unwrap();
        let r: Result<(), StoreError> = s.atomically(|s| {
            s.put_key("a", b"1", 1)?;
            // The second write fails (the key exists): the first is rolled back.
            s.put_key("a", b"2", 1)
        });
        assert!(r.is_err());
        assert_eq!(
            s.key("a").unwrap(),
            None,
            "a failed transaction left a write"
        );
        s.atomically(|s| {
            s.put_key("a", b"1", 1)?;
            s.put_key("b", b"2", 1)
        })
        .unwrap();
        assert_eq!(s.key("b").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn a_store_from_a_newer_program_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.db");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let e = Store::open(&path).unwrap_err();
        assert!(e.to_string().contains("upgrade wayfare"), "{e}");
    }

    #[test]
    fn channels_round_trip_and_update() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("node.db")).unwrap();
        let mut c = ChannelRow {
            id: B256::repeat_byte(3),
            role: "buyer".into(),
            seller: "0x1".into(),
            buyer: "0x2".into(),
            service: 2,
            deposit_wei: U256::from(100u8),
            state: "open".into(),
            open_tx: Some("0xaa".into()),
            to_seller_wei: None,
            to_buyer_wei: None,
            closes_at: None,
            opened_at: 1,
            updated_at: 1,
        };
        s.put_channel(&c).unwrap();
        c.state = "closed".into();
        c.open_tx = None;
        c.to_seller_wei = Some(U256::from(60u8));
        c.to_buyer_wei = Some(U256::from(40u8));
        s.put_channel(&c).unwrap();
        let got = s.channel(c.id).unwrap().unwrap();
        assert_eq!(got.state, "closed");
        assert_eq!(got.open_tx.as_deref(), Some("0xaa"));
        assert_eq!(got.to_seller_wei, Some(U256::from(60u8)));
    }
}
