//! IIsComputer's methods (backups, history, export and import, all of the
//! metabase's files) and the IIsBackup class whose instances are the
//! backups: creating one makes a backup, deleting one deletes it.

use metabase::{BackupVersion, ExportOptions, ImportOptions, MbPath, MetabaseFiles};

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

fn done(params: Vec<(&str, WmiValue)>) -> Outcome {
    Outcome::Done(
        params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// What an IIsComputer method (or a Put or Delete of an IIsBackup) does
/// to the metabase's files, its arguments checked: carried out on the
/// files here by [`run`], or by the running server when the caller
/// reaches one ([MS-IMSA]'s Backup, Restore, EnumBackups, DeleteBackup,
/// SaveData, Export and Import).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// MD_BACKUP_* flags; the version as a code (MD_BACKUP_NEXT_VERSION…).
    Backup {
        location: String,
        version: u32,
        password: Option<String>,
        flags: u32,
    },
    Restore {
        location: String,
        version: u32,
        password: Option<String>,
    },
    /// The backup at `index` of those named `location` (or all).
    EnumBackups {
        location: Option<String>,
        index: u32,
    },
    DeleteBackup {
        location: String,
        version: u32,
    },
    SaveData,
    Export {
        file: String,
        source: MbPath,
        password: Option<String>,
        flags: u32,
    },
    Import {
        file: String,
        source: MbPath,
        dest: MbPath,
        password: Option<String>,
        flags: u32,
    },
}

impl FileOp {
    /// Whether the backup it makes is to be saved first, and whether a
    /// failed save may be ignored (MD_BACKUP_SAVE_FIRST, _FORCE_BACKUP).
    pub fn saves_first(&self) -> Option<bool> {
        match self {
            FileOp::Backup { flags, .. } if flags & SAVE_FIRST != 0 => {
                Some(flags & FORCE_BACKUP != 0)
            }
            _ => None,
        }
    }
}

/// MD_BACKUP_NEXT_VERSION, MD_BACKUP_HIGHEST_VERSION ([MS-IMSA] 3.1.4.3).
pub const NEXT_VERSION: u32 = 0xFFFF_FFFF;
pub const HIGHEST_VERSION: u32 = 0xFFFF_FFFE;

/// Checks an IIsComputer method's arguments.
pub fn parse(method: &str, args: &[(String, Vec<String>)]) -> Result<FileOp> {
    let password = arg(args, "BackupPassword")
        .or_else(|| arg(args, "Password"))
        .or_else(|| arg(args, "Passwd"))
        .filter(|p| !p.is_empty())
        .map(str::to_string);
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
    let code = |default| -> Result<u32> {
        let code = number(args, "BackupVersion", default)?;
        BackupVersion::from_code(code).map_err(from_metabase)?;
        Ok(code)
    };
    Ok(match method {
        "Backup" | "BackupWithPassword" => FileOp::Backup {
            location: location(args),
            version: code(NEXT_VERSION)?,
            password: password.filter(|_| method == "BackupWithPassword"),
            flags: number(args, "BackupFlags", SAVE_FIRST)?,
        },
        "Restore" | "RestoreWithPassword" => FileOp::Restore {
            location: location(args),
            version: code(HIGHEST_VERSION)?,
            password: password.filter(|_| method == "RestoreWithPassword"),
        },
        "EnumBackups" => FileOp::EnumBackups {
            location: arg(args, "BackupLocation")
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
            index: number(args, "IndexIn", 0)?,
        },
        "DeleteBackup" => FileOp::DeleteBackup {
            location: location(args),
            version: code(HIGHEST_VERSION)?,
        },
        "SaveData" => FileOp::SaveData,
        "Export" => FileOp::Export {
            file: arg(args, "FileName")
                .ok_or_else(|| {
                    WmiError::new(WbemStatus::InvalidParameter, "Export needs FileName")
                })?
                .to_string(),
            source: key_path(arg(args, "SourcePath").unwrap_or("LM"))?,
            password,
            flags: number(args, "MDFlags", 0)?,
        },
        "Import" => {
            let need = |n: &str| {
                arg(args, n).ok_or_else(|| {
                    WmiError::new(WbemStatus::InvalidParameter, format!("Import needs {n}"))
                })
            };
            FileOp::Import {
                file: need("FileName")?.to_string(),
                source: key_path(need("SourcePath")?)?,
                dest: key_path(need("DestPath")?)?,
                password,
                flags: number(args, "MDFlags", 0)?,
            }
        }
        other => {
            return Err(WmiError::new(
                WbemStatus::InvalidMethod,
                format!("IIsComputer has no method {other}"),
            ))
        }
    })
}

/// The out-parameters of a backup operation.
pub fn backup_params(name: &str, version: u32) -> Outcome {
    done(vec![
        ("BackupLocation", WmiValue::String(name.to_string())),
        ("BackupVersion", WmiValue::UInt32(version)),
    ])
}

/// EnumBackups' answer: the backup at `index` of `list`, or WBEM_E_NOT_FOUND
/// (MD_ERROR_DATA_NOT_FOUND ends the enumeration).
pub fn enum_backups_answer(list: &[metabase::BackupInfo], index: u32) -> Result<Outcome> {
    let Some(b) = list.get(index as usize) else {
        return Err(WmiError::new(
            WbemStatus::NotFound,
            format!(
                "there is no backup at index {index} ({} in all)",
                list.len()
            ),
        ));
    };
    Ok(done(vec![
        ("BackupLocation", WmiValue::String(b.name.clone())),
        ("BackupVersionOut", WmiValue::UInt32(b.version)),
        (
            "BackupDateTimeOut",
            b.modified
                .map(crate::provider::dmtf_datetime)
                .map_or(WmiValue::Null, WmiValue::String),
        ),
    ]))
}

/// Carries out a file operation on the files here.
pub fn run(files: &MetabaseFiles, op: &FileOp) -> Result<Outcome> {
    let version = |code: u32| BackupVersion::from_code(code).map_err(from_metabase);
    Ok(match op {
        FileOp::Backup {
            location,
            version: code,
            password,
            flags,
        } => {
            if let Some(forced) = op.saves_first() {
                if let Err(e) = files.save() {
                    if !forced {
                        return Err(from_metabase(e));
                    }
                }
            }
            let info = files
                .backup(
                    location,
                    version(*code)?,
                    password.as_deref(),
                    flags & OVERWRITE != 0,
                )
                .map_err(from_metabase)?;
            backup_params(&info.name, info.version)
        }
        FileOp::Restore {
            location,
            version: code,
            password,
        } => {
            let info = files
                .restore_backup(location, version(*code)?, password.as_deref())
                .map_err(from_metabase)?;
            backup_params(&info.name, info.version)
        }
        FileOp::EnumBackups { location, index } => {
            let list = files
                .list_backups(location.as_deref())
                .map_err(from_metabase)?;
            return enum_backups_answer(&list, *index);
        }
        FileOp::DeleteBackup {
            location,
            version: code,
        } => {
            let info = files
                .delete_backup(location, version(*code)?)
                .map_err(from_metabase)?;
            backup_params(&info.name, info.version)
        }
        FileOp::SaveData => {
            files.save().map_err(from_metabase)?;
            done(vec![])
        }
        FileOp::Export {
            file,
            source,
            password,
            flags,
        } => {
            files
                .export(
                    source,
                    std::path::Path::new(file),
                    password.as_deref(),
                    ExportOptions {
                        inherited: flags & INHERITED != 0,
                        node_only: flags & NODE_ONLY != 0,
                    },
                )
                .map_err(from_metabase)?;
            // As IIS's Export and Import: no out-parameters.
            done(vec![])
        }
        FileOp::Import {
            file,
            source,
            dest,
            password,
            flags,
        } => {
            files
                .import(
                    std::path::Path::new(file),
                    source,
                    dest,
                    password.as_deref(),
                    ImportOptions {
                        inherited: flags & INHERITED != 0,
                        node_only: flags & NODE_ONLY != 0,
                        merge: flags & MERGE != 0,
                    },
                )
                .map_err(from_metabase)?;
            done(vec![])
        }
    })
}

/// Put on IIsBackup: makes the backup (Location, Version — next when
/// absent — and Password, all optional), never replacing one.
pub fn put_backup(props: &[(String, Vec<String>)]) -> Result<FileOp> {
    let name = match arg(props, "Location").map(str::trim) {
        None | Some("") => DEFAULT_LOCATION.to_string(),
        Some(l) => l.to_string(),
    };
    let version = match arg(props, "Version") {
        None => NEXT_VERSION,
        Some(_) => {
            let code = number(props, "Version", 0)?;
            BackupVersion::from_code(code).map_err(from_metabase)?;
            code
        }
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
    Ok(FileOp::Backup {
        location: name,
        version,
        password: arg(props, "Password")
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        flags: 0,
    })
}

/// The object path of the backup a Put made.
pub fn backup_path(outcome: &Outcome) -> String {
    let (mut name, mut version) = (String::new(), 0);
    if let Outcome::Done(params) = outcome {
        for (k, v) in params {
            match (k.as_str(), v) {
                ("BackupLocation", WmiValue::String(s)) => name = s.clone(),
                ("BackupVersion", WmiValue::UInt32(n)) => version = *n,
                _ => {}
            }
        }
    }
    backup_relpath(&name, version)
}

/// An IIsBackup's object path.
pub fn backup_relpath(name: &str, version: u32) -> String {
    format!(
        "{BACKUP_CLASS}.Location=\"{}\",Version={version}",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// Delete on IIsBackup: deletes that backup.
pub fn delete_backup(path: &ObjectPath) -> Result<FileOp> {
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
    Ok(FileOp::DeleteBackup {
        location: location.to_string(),
        version,
    })
}
