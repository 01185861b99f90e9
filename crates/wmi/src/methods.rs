//! Methods of the element classes, as the IIS 6 provider has them.
//! What the metabase alone can do is done here (creating sites and
//! applications, starting and stopping sites through ServerAutoStart);
//! what only the running service can do (pausing a site, starting,
//! stopping or recycling a pool) comes back as a [`ServerAction`] for the
//! caller to carry out.

use metabase::{MbPath, Metabase, Value};

use crate::classes::ClassModel;
use crate::error::{Result, WbemStatus, WmiError};
use crate::provider::{name_of, Provider};
use crate::value::WmiValue;
use crate::write::{from_metabase, key_path};

/// Something only the running server can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAction {
    /// ServerCommand on a site (by ID). Start and Stop were also recorded
    /// in ServerAutoStart, so without a server they still take effect at
    /// the next start; Pause and Continue need the server.
    StartSite(u32),
    StopSite(u32),
    PauseSite(u32),
    ContinueSite(u32),
    /// A pool by name.
    StartPool(String),
    StopPool(String),
    RecyclePool(String),
}

impl ServerAction {
    /// Whether the method is lost without a running server.
    pub fn needs_server(&self) -> bool {
        !matches!(self, ServerAction::StartSite(_) | ServerAction::StopSite(_))
    }
}

/// What a method did.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Done; the out-parameters (ReturnValue, …).
    Done(Vec<(String, WmiValue)>),
    /// The caller must ask the server.
    Server(ServerAction),
    /// The caller must carry this out on the metabase's files (here, with
    /// [`crate::computer::run`], or through the server that has them).
    Files(crate::computer::FileOp),
}

/// The methods each element class has, for the catalogue and for errors.
pub fn methods_of(model: &ClassModel, class: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if model.is_a(class, "IIsComputer") {
        out.extend(crate::computer::METHODS);
    }
    if model.is_a(class, "IIsWebServer") {
        out.extend(["Start", "Stop", "Pause", "Continue"]);
    }
    if model.is_a(class, "IIsWebService") {
        out.push("CreateNewSite");
    }
    if model.is_a(class, "IIsApplicationPool") {
        out.extend(["Start", "Stop", "Recycle", "EnumAppsInPool"]);
    }
    if model.is_a(class, "IIsWebVirtualDir") || model.is_a(class, "IIsWebDirectory") {
        out.extend([
            "AppCreate",
            "AppCreate2",
            "AppCreate3",
            "AppDelete",
            "AppDisable",
            "AppEnable",
            "AppUnload",
            "AppGetStatus",
        ]);
    }
    out
}

/// Named arguments, case-insensitive; several values for an array.
pub struct Args<'a>(pub &'a [(String, Vec<String>)]);

impl Args<'_> {
    fn all(&self, name: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.all(name).and_then(|v| v.first()).map(String::as_str)
    }

    fn required(&self, method: &str, name: &str) -> Result<&str> {
        self.one(name).ok_or_else(|| {
            WmiError::new(
                WbemStatus::InvalidParameter,
                format!("{method} needs {name}"),
            )
        })
    }

    fn number(&self, name: &str, default: u32) -> Result<u32> {
        match self.one(name) {
            None => Ok(default),
            Some(t) => t.trim().parse().map_err(|_| {
                WmiError::new(
                    WbemStatus::InvalidParameter,
                    format!("{name} is a number, not '{t}'"),
                )
            }),
        }
    }

    fn boolean(&self, name: &str) -> Result<bool> {
        match self.one(name) {
            None => Ok(false),
            Some(t) => metabase::schema::parse_bool(t)
                .map(|v| v == 1)
                .map_err(|e| WmiError::new(WbemStatus::InvalidParameter, format!("{name}: {e}"))),
        }
    }
}

fn done(value: WmiValue) -> Outcome {
    Outcome::Done(vec![("ReturnValue".into(), value)])
}

fn p(text: &str) -> MbPath {
    MbPath::parse(text).unwrap_or_default()
}

/// Runs `method` on the instance at `path`.
pub fn call(
    metabase: &Metabase,
    model: &ClassModel,
    path: &str,
    method: &str,
    args: &[(String, Vec<String>)],
) -> Result<Outcome> {
    let snapshot = metabase.snapshot();
    let provider = Provider::new(model, &snapshot);
    let inst = provider.resolve(path)?;
    let class = inst.class.name.clone();
    if model.is_a(&class, "IIsComputer") {
        return Ok(Outcome::Files(crate::computer::parse(method, args)?));
    }
    let known = methods_of(model, &class);
    let Some(method) = known
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
    else {
        return Err(WmiError::new(
            WbemStatus::InvalidMethod,
            if known.is_empty() {
                format!("{class} has no methods")
            } else {
                format!(
                    "{class} has no method {method} (it has {})",
                    known.join(", ")
                )
            },
        ));
    };
    let args = Args(args);
    let key = inst.path.clone();
    let write = |f: &mut dyn FnMut(&mut metabase::Txn) -> metabase::Result<()>| {
        metabase.write(|t| f(t)).map_err(from_metabase)
    };
    let is_site = model.is_a(&class, "IIsWebServer");
    let is_pool = model.is_a(&class, "IIsApplicationPool");
    Ok(match method {
        "Start" | "Stop" if is_site => {
            // As `inetsrv site start|stop`: the state is kept across
            // restarts (ServerAutoStart), and the running service is told.
            let on = if method == "Start" { "TRUE" } else { "FALSE" };
            write(&mut |t| t.set_text(&key, "ServerAutoStart", &[on.to_string()]))?;
            let id = site_id(&key)?;
            Outcome::Server(if method == "Start" {
                ServerAction::StartSite(id)
            } else {
                ServerAction::StopSite(id)
            })
        }
        "Pause" | "Continue" => {
            let id = site_id(&key)?;
            Outcome::Server(if method == "Pause" {
                ServerAction::PauseSite(id)
            } else {
                ServerAction::ContinueSite(id)
            })
        }
        "Start" | "Stop" | "Recycle" if is_pool => {
            let name = key.name().unwrap_or_default().to_string();
            Outcome::Server(match method {
                "Start" => ServerAction::StartPool(name),
                "Stop" => ServerAction::StopPool(name),
                _ => ServerAction::RecyclePool(name),
            })
        }
        "EnumAppsInPool" => {
            let pool = key.name().unwrap_or_default().to_string();
            let mut apps = Vec::new();
            let _ = snapshot.walk(&p("/LM/W3SVC"), |path, k| {
                let is_app = k.property(APP_ROOT).is_some();
                let in_pool = snapshot
                    .effective(path, APP_POOL_ID)
                    .and_then(|v| v.as_str().map(str::to_string))
                    .is_some_and(|p| p.eq_ignore_ascii_case(&pool));
                if is_app && in_pool {
                    apps.push(WmiValue::String(path.to_string()));
                }
            });
            Outcome::Done(vec![("Applications".into(), WmiValue::Array(apps))])
        }
        "CreateNewSite" => create_new_site(metabase, &snapshot, &args)?,
        "AppCreate" | "AppCreate2" | "AppCreate3" => {
            let mode = match method {
                // InProcFlag TRUE: in process (0), else pooled (2).
                "AppCreate" => {
                    if args.boolean("InProcFlag")? {
                        0
                    } else {
                        2
                    }
                }
                _ => args.number("AppMode", 2)?,
            };
            if mode > 2 {
                return Err(WmiError::new(
                    WbemStatus::InvalidParameter,
                    "AppMode is 0 (in process), 1 (out of process) or 2 (pooled)",
                ));
            }
            let pool = if method == "AppCreate3" {
                args.one("AppPoolName").map(str::to_string)
            } else {
                None
            };
            let create_pool = method == "AppCreate3" && args.boolean("bCreatePool")?;
            let root = key.to_string();
            write(&mut |t| {
                if let Some(pool) = &pool {
                    let pool_path = p("/LM/W3SVC/AppPools").join(pool)?;
                    if create_pool && !t.exists(&pool_path) {
                        t.create_key(&pool_path, "IIsApplicationPool")?;
                    }
                    if !t.exists(&pool_path) {
                        return Err(metabase::Error::PathNotFound(pool_path.to_string()));
                    }
                    t.set(&key, APP_POOL_ID, Value::String(pool.clone()))?;
                }
                t.set(&key, APP_ROOT, Value::String(root.clone()))?;
                t.set(&key, APP_ISOLATED, Value::Dword(mode))
            })?;
            done(WmiValue::Null)
        }
        "AppDelete" => {
            let recursive = args.boolean("Recursive")?;
            let mut targets = vec![key.clone()];
            if recursive {
                let _ = snapshot.walk(&key, |path, k| {
                    if !path.eq_ignore_case(&key) && k.property(APP_ROOT).is_some() {
                        targets.push(path.clone());
                    }
                });
            }
            write(&mut |t| {
                for path in &targets {
                    for id in [APP_ROOT, APP_ISOLATED, APP_POOL_ID, APP_FRIENDLY_NAME] {
                        if t.key(path)?.property(id).is_some() {
                            t.delete_data(path, id)?;
                        }
                    }
                }
                Ok(())
            })?;
            done(WmiValue::Null)
        }
        // In worker process isolation mode an application has no process
        // of its own to unload, enable or disable: IIS 6 accepts these and
        // leaves the pool to its recycling.
        "AppDisable" | "AppEnable" | "AppUnload" => {
            if snapshot
                .find(&key)
                .and_then(|k| k.property(APP_ROOT))
                .is_none()
            {
                return Err(WmiError::new(
                    WbemStatus::NotFound,
                    format!("{} is not an application (no AppRoot)", name_of(&key)),
                ));
            }
            done(WmiValue::Null)
        }
        "AppGetStatus" => {
            // APPSTATUS_NOTDEFINED 2 without AppRoot, else running (1).
            let defined = snapshot
                .find(&key)
                .and_then(|k| k.property(APP_ROOT))
                .is_some();
            done(WmiValue::UInt32(if defined { 1 } else { 2 }))
        }
        other => {
            return Err(WmiError::new(
                WbemStatus::InvalidMethod,
                format!("{class} has no method {other}"),
            ))
        }
    })
}

fn site_id(key: &MbPath) -> Result<u32> {
    key.name()
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| WmiError::new(WbemStatus::Failed, "a site's key name is its ID"))
}

use metabase::ids::{APP_FRIENDLY_NAME, APP_ISOLATED, APP_POOL_ID, APP_ROOT};

/// IIsWebService.CreateNewSite(ServerComment, ServerBindings[],
/// PathOfRootVirtualDir[, ServerId]): a site with its root application,
/// left stopped (Start starts it). Returns `IIsWebServer='W3SVC/N'`.
fn create_new_site(
    metabase: &Metabase,
    snapshot: &metabase::Snapshot,
    args: &Args<'_>,
) -> Result<Outcome> {
    let comment = args.required("CreateNewSite", "ServerComment")?.to_string();
    let bindings: Vec<String> = args
        .all("ServerBindings")
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    if bindings.is_empty() {
        return Err(WmiError::new(
            WbemStatus::InvalidParameter,
            "CreateNewSite needs ServerBindings (IP:port:host, e.g. :83:)",
        ));
    }
    let root_path = args
        .required("CreateNewSite", "PathOfRootVirtualDir")?
        .to_string();
    let service = p("/LM/W3SVC");
    let id = match args.one("ServerId") {
        Some(t) => t
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                WmiError::new(
                    WbemStatus::InvalidParameter,
                    format!("ServerId '{t}' is not a site ID"),
                )
            })?,
        None => {
            let used: Vec<u32> = snapshot
                .child_keys(&service)
                .unwrap_or_default()
                .iter()
                .filter_map(|(n, _)| n.parse().ok())
                .collect();
            (1..).find(|n| !used.contains(n)).unwrap_or(1)
        }
    };
    let site = key_path(&format!("W3SVC/{id}"))?;
    let root = site.join("ROOT").map_err(from_metabase)?;
    metabase
        .write(|t| {
            t.create_key(&site, "IIsWebServer")?;
            t.set_text(&site, "ServerComment", std::slice::from_ref(&comment))?;
            t.set_text(&site, "ServerBindings", &bindings)?;
            t.set_text(&site, "ServerAutoStart", &["FALSE".to_string()])?;
            t.create_key(&root, "IIsWebVirtualDir")?;
            t.set_text(&root, "Path", std::slice::from_ref(&root_path))?;
            t.set(&root, APP_ROOT, Value::String(root.to_string()))?;
            t.set(&root, APP_ISOLATED, Value::Dword(2))?;
            t.set_text(&root, "AccessFlags", &["AccessRead".to_string()])
        })
        .map_err(from_metabase)?;
    Ok(done(WmiValue::String(format!("IIsWebServer='W3SVC/{id}'"))))
}
