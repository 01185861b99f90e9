//! IIsComputer's methods (backups, history, export and import, all of the
//! metabase's files) and the IIsBackup class whose instances are the
//! backups: creating one makes a backup, deleting one deletes it.

use metabase::{BackupVersion, ExportOptions, ImportOptions, MetabaseFiles};

use crate::classes::BACKUP_CLASS;
use crate::error::{Result, WbemStatus, WmiError};
use crate::methods::Outcome;
use crate::path::ObjectPath;
use crate::value::WmiValue;
use crate::write::{from_metabase, key_path};

/// MD_BACKUP_* flags.
const OVERWRITE: u32 = 0x1;
const SAVE_FIRST: u32 = 0x2;
const FORCE_BACKUP: u32 = 0x4;
/// MD_EXPORT_* / MD_IMPORT_* flags.
const INHERITED: u32 = 0x1;
const NODE_ONLY: u32 = 0x2;
const MERGE: u32 = 0x4;

/// The backup location an empty name means.
pub const DEFAULT_LOCATION: &str = "Default";

pub const METHODS: [&str; 9] = [
    "Backup",
    "BackupWithPassword",
    "Restore",
    "RestoreWithPassword",
    "EnumBackups",
    "DeleteBackup",
    "SaveData",
    "Export",
    "Import",
];

fn arg<'a>(args: &'a [(String, Vec<String>)], name: &str) -> Option<&'a str> {
    args.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

/// A DWORD argument; VBScript passes &HFFFFFFFF as -1, so negative
/// numbers are taken as their 32-bit pattern.
fn number(args: &[(String, Vec<String>)], name: &str, default: u32) -> Result<u32> {
    match arg(args, name) {
        None => Ok(default),
        Some(t) => {
            let t = t.trim();
            let parsed = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                u32::from_str_radix(hex, 16).ok()
            } else {
                t.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= i64::from(i32::MIN) && *n <= i64::from(u32::MAX))
                    .map(|n| n as u32)
            };
            parsed.ok_or_else(|| {
                WmiError::new(
                    WbemStatus::InvalidParameter,
                    format!("{name} is a number, not '{t}'"),
                )
            })
        }
    }
}

fn location(args: &[(String, Vec<String>)]) -> String {
    match arg(args, "BackupLocation").map(str::trim) {
        None | Some("") => DEFAULT_LOCATION.to_string(),
        Some(l) => l.to_string(),
    }
}

fn version(args: &[(String, Vec<String>)], default: u32) -> Result<BackupVersion> {
    BackupVersion::from_code(number(args, "BackupVersion", default)?).map_err(from_metabase)
}

fn done(params: Vec<(&str, WmiValue)>) -> Outcome {
    Outcome::Done(
        params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// Runs an IIsComputer method.
pub fn call(
    files: &MetabaseFiles,
    method: &str,
    args: &[(String, Vec<String>)],
) -> Result<Outcome> {
    let password = arg(args, "BackupPassword")
        .or_else(|| arg(args, "Password"))
        .or_else(|| arg(args, "Passwd"))
        .filter(|p| !p.is_empty());
    let method = METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .ok_or_else(|| {
            WmiError::new(
                WbemStatus::InvalidMethod,
                format!(
                    "IIsComputer has no method {method} (it has {})",
                    METHODS.join(", ")
                ),
            )
        })?;
    Ok(match method {
        "Backup" | "BackupWithPassword" => {
            let flags = number(args, "BackupFlags", SAVE_FIRST)?;
            if flags & SAVE_FIRST != 0 {
                if let Err(e) = files.save() {
                    if flags & FORCE_BACKUP == 0 {
                        return Err(from_metabase(e));
                    }
                }
            }
            let pw = if method == "BackupWithPassword" {
                password
            } else {
                None
            };
            let info = files
                .backup(
                    &location(args),
                    version(args, 0xFFFF_FFFF)?,
                    pw,
                    flags & OVERWRITE != 0,
                )
                .map_err(from_metabase)?;
            done(vec![
                ("BackupLocation", WmiValue::String(info.name)),
                ("BackupVersion", WmiValue::UInt32(info.version)),
            ])
        }
        "Restore" | "RestoreWithPassword" => {
            let pw = if method == "RestoreWithPassword" {
                password
            } else {
                None
            };
            let info = files
                .restore_backup(&location(args), version(args, 0xFFFF_FFFE)?, pw)
                .map_err(from_metabase)?;
            done(vec![
                ("BackupLocation", WmiValue::String(info.name)),
                ("BackupVersion", WmiValue::UInt32(info.version)),
            ])
        }
        "EnumBackups" => {
            let wanted = arg(args, "BackupLocation")
                .map(str::trim)
                .filter(|l| !l.is_empty());
            let index = number(args, "IndexIn", 0)? as usize;
            let list = files.list_backups(wanted).map_err(from_metabase)?;
            let Some(b) = list.get(index) else {
                // MD_ERROR_DATA_NOT_FOUND ends the enumeration.
                return Err(WmiError::new(
                    WbemStatus::NotFound,
                    format!(
                        "there is no backup at index {index} ({} in all)",
                        list.len()
                    ),
                ));
            };
            done(vec![
                ("BackupLocation", WmiValue::String(b.name.clone())),
                ("BackupVersionOut", WmiValue::UInt32(b.version)),
                (
                    "BackupDateTimeOut",
                    b.modified
                        .map(crate::provider::dmtf_datetime)
                        .map_or(WmiValue::Null, WmiValue::String),
                ),
            ])
        }
        "DeleteBackup" => {
            let info = files
                .delete_backup(&location(args), version(args, 0xFFFF_FFFE)?)
                .map_err(from_metabase)?;
            done(vec![
                ("BackupLocation", WmiValue::String(info.name)),
                ("BackupVersion", WmiValue::UInt32(info.version)),
            ])
        }
        "SaveData" => {
            files.save().map_err(from_metabase)?;
            done(vec![])
        }
        "Export" => {
            let file = arg(args, "FileName").ok_or_else(|| {
                WmiError::new(WbemStatus::InvalidParameter, "Export needs FileName")
            })?;
            let source = key_path(arg(args, "SourcePath").unwrap_or("LM"))?;
            let flags = number(args, "MDFlags", 0)?;
            let keys = files
                .export(
                    &source,
                    std::path::Path::new(file),
                    password,
                    ExportOptions {
                        inherited: flags & INHERITED != 0,
                        node_only: flags & NODE_ONLY != 0,
                    },
                )
                .map_err(from_metabase)?;
            done(vec![("KeysExported", WmiValue::UInt32(keys as u32))])
        }
        "Import" => {
            let file = arg(args, "FileName").ok_or_else(|| {
                WmiError::new(WbemStatus::InvalidParameter, "Import needs FileName")
            })?;
            let need = |n: &str| {
                arg(args, n).ok_or_else(|| {
                    WmiError::new(WbemStatus::InvalidParameter, format!("Import needs {n}"))
                })
            };
            let source = key_path(need("SourcePath")?)?;
            let dest = key_path(need("DestPath")?)?;
            let flags = number(args, "MDFlags", 0)?;
            let keys = files
                .import(
                    std::path::Path::new(file),
                    &source,
                    &dest,
                    password,
                    ImportOptions {
                        inherited: flags & INHERITED != 0,
                        node_only: flags & NODE_ONLY != 0,
                        merge: flags & MERGE != 0,
                    },
                )
                .map_err(from_metabase)?;
            done(vec![("KeysImported", WmiValue::UInt32(keys as u32))])
        }
        other => {
            return Err(WmiError::new(
                WbemStatus::InvalidMethod,
                format!("IIsComputer has no method {other}"),
            ))
        }
    })
}

/// Put on IIsBackup: makes the backup (Location, Version — next when
/// absent — and Password, all optional). Returns its path.
pub fn put_backup(files: &MetabaseFiles, props: &[(String, Vec<String>)]) -> Result<String> {
    let name = match arg(props, "Location").map(str::trim) {
        None | Some("") => DEFAULT_LOCATION.to_string(),
        Some(l) => l.to_string(),
    };
    let version = match arg(props, "Version") {
        None => BackupVersion::Next,
        Some(_) => BackupVersion::from_code(number(props, "Version", 0)?).map_err(from_metabase)?,
    };
    for (k, _) in props {
        if !["Location", "Version", "Password"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(k))
        {
            return Err(WmiError::new(
                WbemStatus::InvalidProperty,
                format!("{BACKUP_CLASS} takes Location, Version and Password, not {k}"),
            ));
        }
    }
    let password = arg(props, "Password").filter(|p| !p.is_empty());
    let info = files
        .backup(&name, version, password, false)
        .map_err(from_metabase)?;
    Ok(format!(
        "{BACKUP_CLASS}.Location=\"{}\",Version={}",
        info.name, info.version
    ))
}

/// Delete on IIsBackup: deletes that backup.
pub fn delete_backup(files: &MetabaseFiles, path: &ObjectPath) -> Result<()> {
    let (Some(location), Some(version)) = (path.key_value("Location"), path.key_value("Version"))
    else {
        return Err(WmiError::new(
            WbemStatus::InvalidObjectPath,
            "an IIsBackup is named by Location and Version: IIsBackup.Location=\"name\",Version=1",
        ));
    };
    let version: u32 = version.parse().map_err(|_| {
        WmiError::new(
            WbemStatus::InvalidObjectPath,
            format!("Version '{version}' is not a number"),
        )
    })?;
    files
        .delete_backup(location, BackupVersion::Exact(version))
        .map_err(from_metabase)?;
    Ok(())
}
