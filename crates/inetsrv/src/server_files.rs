//! A server's metabase files (its `MetaBack/` backups, SaveData, export
//! and import files) through IMSAdminBaseW and IMSAdminBase2W: what
//! `inetsrv backup`, `inetsrv config` and the WMI provider's IIsComputer
//! methods do on a running server, here or another machine.

use anyhow::Result;
use iisadmin::imsa::{MsAdminBase2WAddsClient, MsAdminBaseWClient};
use msrpc::client::Connection;

use crate::mb_cmd::{check, this, wide, AdminSession};

/// MD_BACKUP_NEXT_VERSION and MD_BACKUP_HIGHEST_VERSION ([MS-IMSA] 3.1.4.3).
pub use wmi::computer::{HIGHEST_VERSION, NEXT_VERSION};

/// A backup on the server.
pub struct ServerBackup {
    pub name: String,
    pub version: u32,
    pub modified: Option<std::time::SystemTime>,
    /// Whether a password seals it: told by inetsrv's metabase-tree
    /// interface; IIS's EnumBackups does not say.
    pub password_protected: Option<bool>,
}

/// The server's backups (named `name`, or all).
pub async fn backups(
    conn: &mut Connection,
    session: &AdminSession,
    name: Option<&str>,
) -> Result<Vec<ServerBackup>> {
    if session.tree {
        use iisadmin::mbtree::MetabaseTreeClient;
        let (_, list, hr) = MetabaseTreeClient::bind(conn)
            .await?
            .on_object(session.ipid)
            .list_backups(
                this(),
                msrpc::ndr::Unique::new(name.map(|n| msrpc::ndr::WString(n.to_string()))),
            )
            .await?;
        check(hr, "ListBackups")?;
        return Ok(list
            .get()
            .map(|l| l.0.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|b| ServerBackup {
                name: b.name.0.clone(),
                version: b.version,
                modified: b.modified.to_system(),
                password_protected: Some(b.password_protected != 0),
            })
            .collect());
    }
    use iisadmin::imsa::{ERROR_NO_MORE_ITEMS, MAX_BACKUP_LEN};
    let mut admin = MsAdminBaseWClient::bind(conn)
        .await?
        .on_object(session.ipid);
    let mut found = Vec::new();
    for index in 0.. {
        let mut asked: Vec<u16> = name.unwrap_or("").encode_utf16().collect();
        asked.resize(MAX_BACKUP_LEN + 1, 0);
        let (_, got, version, time, hr) = admin
            .enum_backups(this(), msrpc::ndr::ConformantArray(asked), index)
            .await?;
        if hr == ERROR_NO_MORE_ITEMS {
            break;
        }
        check(hr, "EnumBackups")?;
        let end = got.0.iter().position(|&u| u == 0).unwrap_or(got.0.len());
        found.push(ServerBackup {
            name: String::from_utf16_lossy(&got.0[..end]),
            version,
            modified: time.to_system(),
            password_protected: None,
        });
    }
    Ok(found)
}

/// The version a code names on the server: itself, or for
/// MD_BACKUP_HIGHEST_VERSION (and, after a backup, NEXT) the highest of
/// the name.
async fn resolve(
    conn: &mut Connection,
    session: &AdminSession,
    name: &str,
    code: u32,
) -> Result<u32> {
    if code != HIGHEST_VERSION && code != NEXT_VERSION {
        return Ok(code);
    }
    backups(conn, session, Some(name))
        .await?
        .iter()
        .map(|b| b.version)
        .max()
        .ok_or_else(|| NoSuchBackup(name.to_string()).into())
}

/// A backup name the server has no backup of.
#[derive(Debug)]
pub struct NoSuchBackup(pub String);

impl std::fmt::Display for NoSuchBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no backup named '{}' on the server", self.0)
    }
}

impl std::error::Error for NoSuchBackup {}

/// Backup (or BackupWithPasswd): returns the version made.
pub async fn backup(
    conn: &mut Connection,
    session: &AdminSession,
    name: &str,
    code: u32,
    flags: u32,
    password: Option<&str>,
) -> Result<u32> {
    let hr = match password {
        Some(p) => {
            MsAdminBase2WAddsClient::bind(conn)
                .await?
                .on_object(session.ipid)
                .backup_with_password(this(), wide(name), code, flags, wide(p))
                .await?
                .1
        }
        None => {
            MsAdminBaseWClient::bind(conn)
                .await?
                .on_object(session.ipid)
                .backup(this(), wide(name), code, flags)
                .await?
                .1
        }
    };
    // MD_WARNING_SAVE_FAILED is a success with a warning.
    if hr & 0x8000_0000 != 0 {
        check(hr, "Backup")?;
    }
    resolve(conn, session, name, code).await
}

/// Restore (or RestoreWithPasswd): returns the version restored.
pub async fn restore(
    conn: &mut Connection,
    session: &AdminSession,
    name: &str,
    code: u32,
    password: Option<&str>,
) -> Result<u32> {
    let version = resolve(conn, session, name, code).await?;
    let hr = match password {
        Some(p) => {
            MsAdminBase2WAddsClient::bind(conn)
                .await?
                .on_object(session.ipid)
                .restore_with_password(this(), wide(name), version, 0, wide(p))
                .await?
                .1
        }
        None => {
            MsAdminBaseWClient::bind(conn)
                .await?
                .on_object(session.ipid)
                .restore(this(), wide(name), version, 0)
                .await?
                .1
        }
    };
    check(hr, "Restore")?;
    Ok(version)
}

/// DeleteBackup: returns the version deleted.
pub async fn delete_backup(
    conn: &mut Connection,
    session: &AdminSession,
    name: &str,
    code: u32,
) -> Result<u32> {
    let version = resolve(conn, session, name, code).await?;
    let hr = MsAdminBaseWClient::bind(conn)
        .await?
        .on_object(session.ipid)
        .delete_backup(this(), wide(name), version)
        .await?
        .1;
    check(hr, "DeleteBackup")?;
    Ok(version)
}

/// SaveData: MetaBase.xml written, a History/ version made.
pub async fn save(conn: &mut Connection, session: &AdminSession) -> Result<()> {
    let hr = MsAdminBaseWClient::bind(conn)
        .await?
        .on_object(session.ipid)
        .save_data(this())
        .await?
        .1;
    check(hr, "SaveData")
}

/// Export: `source` and below to `file` on the server (MD_EXPORT_* flags).
pub async fn export(
    conn: &mut Connection,
    session: &AdminSession,
    source: &str,
    file: &str,
    password: Option<&str>,
    flags: u32,
) -> Result<()> {
    let hr = MsAdminBase2WAddsClient::bind(conn)
        .await?
        .on_object(session.ipid)
        .export(
            this(),
            wide(password.unwrap_or("")),
            wide(file),
            wide(source),
            flags,
        )
        .await?
        .1;
    check(hr, "Export")
}

/// Import: `source` of `file` on the server as `dest` (MD_IMPORT_* flags).
pub async fn import(
    conn: &mut Connection,
    session: &AdminSession,
    file: &str,
    source: &str,
    dest: &str,
    password: Option<&str>,
    flags: u32,
) -> Result<()> {
    let hr = MsAdminBase2WAddsClient::bind(conn)
        .await?
        .on_object(session.ipid)
        .import(
            this(),
            wide(password.unwrap_or("")),
            wide(file),
            wide(source),
            wide(dest),
            flags,
        )
        .await?
        .1;
    check(hr, "Import")
}
