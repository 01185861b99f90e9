//! Making sites and virtual directories as IIS Manager and `iisweb` /
//! `iisvdir` make them: the keys, their types and the properties a new
//! one starts with, in one metabase transaction, after the checks that
//! keep the configuration whole (a free name, ID and binding, an existing
//! pool, a path with no `.` or `..`). The command line and the
//! management console both call these, so both refuse the same things
//! with the same words.

use metabase::{MbPath, Metabase};

use crate::model::{Binding, Model};

/// Why a site or virtual directory was not made.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Metabase(#[from] metabase::Error),
}

fn refused(why: impl Into<String>) -> ProvisionError {
    ProvisionError::Refused(why.into())
}

/// Checks that a content directory exists here (on the server's
/// machine), as a site or virtual directory needs it.
pub fn existing_directory(dir: &std::path::Path) -> Result<(), ProvisionError> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(refused(format!(
        "{} is not a directory (create it first, for example: mkdir -p {})",
        dir.display(),
        dir.display()
    )))
}

/// A new site.
pub struct NewSite<'a> {
    /// Its ServerComment.
    pub name: &'a str,
    /// The root's content directory (its existence is the caller's to
    /// check: it may be on another machine).
    pub dir: &'a str,
    pub binding: Binding,
    pub pool: &'a str,
    /// Its ID (the first free one if not given).
    pub id: Option<u32>,
    pub auto_start: bool,
}

fn path(text: &str) -> Result<MbPath, ProvisionError> {
    MbPath::parse(text).map_err(|e| refused(format!("{text}: {e}")))
}

fn text(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

/// Makes a site with its root application; its ID.
pub fn create_site(metabase: &Metabase, site: &NewSite<'_>) -> Result<u32, ProvisionError> {
    let model = Model::read(&metabase.snapshot());
    let name = site.name.trim();
    if name.is_empty() {
        return Err(refused("give the site a name"));
    }
    if model
        .sites
        .values()
        .any(|s| s.comment.eq_ignore_ascii_case(name))
    {
        return Err(refused(format!("a site named '{name}' exists")));
    }
    if model.pool(site.pool).is_none() {
        return Err(refused(format!(
            "no application pool '{}' (create it with: inetsrv pool create {})",
            site.pool, site.pool
        )));
    }
    let binding_text = site.binding.to_string();
    Binding::parse(&binding_text).map_err(refused)?;
    if let Some(other) = model
        .sites
        .values()
        .find(|s| s.bindings.contains(&site.binding))
    {
        return Err(refused(format!(
            "binding {binding_text} is used by site {} ({})",
            other.id, other.comment
        )));
    }
    let id = match site.id {
        Some(0) => return Err(refused("site IDs start at 1")),
        Some(id) if model.sites.contains_key(&id) => {
            return Err(refused(format!("site ID {id} is taken")))
        }
        Some(id) => id,
        None => (1..).find(|n| !model.sites.contains_key(n)).unwrap_or(1),
    };
    let key = path(&format!("/LM/W3SVC/{id}"))?;
    let filters = path(&format!("/LM/W3SVC/{id}/Filters"))?;
    let root_text = format!("/LM/W3SVC/{id}/ROOT");
    let root = path(&root_text)?;
    metabase.write(|t| {
        t.create_key(&key, "IIsWebServer")?;
        t.set_text(&key, "ServerComment", &text(&[name]))?;
        t.set_text(&key, "ServerBindings", &text(&[&binding_text]))?;
        let start = if site.auto_start { "TRUE" } else { "FALSE" };
        t.set_text(&key, "ServerAutoStart", &text(&[start]))?;
        t.create_key(&filters, "IIsFilters")?;
        t.create_key(&root, "IIsWebVirtualDir")?;
        t.set_text(&root, "Path", &text(&[site.dir]))?;
        t.set_text(&root, "AccessFlags", &text(&["AccessRead | AccessScript"]))?;
        t.set_text(&root, "AppRoot", &text(&[&root_text]))?;
        t.set_text(&root, "AppIsolated", &text(&["2"]))?;
        t.set_text(&root, "AppPoolId", &text(&[site.pool]))?;
        t.set_text(&root, "AppFriendlyName", &text(&["Default Application"]))
    })?;
    Ok(id)
}

/// The key of a virtual directory `alias` (`docs`, `a/b`) of site `id`,
/// and its segments.
pub fn alias_path(id: u32, alias: &str) -> Result<(String, Vec<String>), ProvisionError> {
    let parts: Vec<String> = alias
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if parts.is_empty() {
        return Err(refused(
            "give the alias of a virtual directory below the site's root, e.g. docs",
        ));
    }
    if parts.iter().any(|s| s == "." || s == "..") {
        return Err(refused(format!("'{alias}' may not hold . or .. segments")));
    }
    Ok((format!("/LM/W3SVC/{id}/ROOT/{}", parts.join("/")), parts))
}

/// A new virtual directory.
pub struct NewVirtualDirectory<'a> {
    pub site: u32,
    pub alias: &'a str,
    pub dir: &'a str,
    /// Also an application (pooled), in `pool` if given.
    pub app: bool,
    pub pool: Option<&'a str>,
}

/// Makes a virtual directory (and the directory keys between the root
/// and it); its key.
pub fn create_virtual_directory(
    metabase: &Metabase,
    vdir: &NewVirtualDirectory<'_>,
) -> Result<String, ProvisionError> {
    let snapshot = metabase.snapshot();
    let model = Model::read(&snapshot);
    if !model.sites.contains_key(&vdir.site) {
        return Err(refused(format!("there is no site {}", vdir.site)));
    }
    let (key_text, parts) = alias_path(vdir.site, vdir.alias)?;
    let key = path(&key_text)?;
    if snapshot.find(&key).is_some() {
        return Err(refused(format!("{key_text} exists")));
    }
    if let Some(pool) = vdir.pool {
        if model.pool(pool).is_none() {
            return Err(refused(format!("no application pool '{pool}'")));
        }
    }
    let mut between = Vec::new();
    let mut at = format!("/LM/W3SVC/{}/ROOT", vdir.site);
    for part in &parts[..parts.len() - 1] {
        at = format!("{at}/{part}");
        let p = path(&at)?;
        if snapshot.find(&p).is_none() {
            between.push(p);
        }
    }
    let friendly = parts.last().cloned().unwrap_or_default();
    metabase.write(|t| {
        for p in &between {
            t.create_key(p, "IIsWebDirectory")?;
        }
        t.create_key(&key, "IIsWebVirtualDir")?;
        t.set_text(&key, "Path", &text(&[vdir.dir]))?;
        if vdir.app {
            t.set_text(&key, "AppRoot", &text(&[&key_text]))?;
            t.set_text(&key, "AppIsolated", &text(&["2"]))?;
            t.set_text(&key, "AppFriendlyName", &text(&[&friendly]))?;
            if let Some(pool) = vdir.pool {
                t.set_text(&key, "AppPoolId", &text(&[pool]))?;
            }
        }
        Ok(())
    })?;
    Ok(key_text)
}

/// Deletes a virtual directory (with what is below it).
pub fn delete_virtual_directory(
    metabase: &Metabase,
    site: u32,
    alias: &str,
) -> Result<String, ProvisionError> {
    let (key_text, parts) = alias_path(site, alias)?;
    let key = path(&key_text)?;
    match metabase.snapshot().find(&key) {
        None => {
            return Err(refused(format!(
                "no virtual directory /{} in site {site}",
                parts.join("/")
            )))
        }
        Some(k) if !k.key_type().eq_ignore_ascii_case("IIsWebVirtualDir") => {
            return Err(refused(format!(
                "{key_text} is a {}, not a virtual directory",
                k.key_type()
            )))
        }
        Some(_) => {}
    }
    metabase.write(|t| t.delete_key(&key))?;
    Ok(key_text)
}

/// Deletes a site, with its virtual directories and settings.
pub fn delete_site(metabase: &Metabase, id: u32) -> Result<(), ProvisionError> {
    if !Model::read(&metabase.snapshot()).sites.contains_key(&id) {
        return Err(refused(format!("there is no site {id}")));
    }
    let key = path(&format!("/LM/W3SVC/{id}"))?;
    metabase.write(|t| t.delete_key(&key))?;
    Ok(())
}

/// A new application pool.
pub struct NewPool<'a> {
    pub name: &'a str,
    /// AppPoolIdentityType, and WAMUserName for a configurable one.
    pub identity: Option<(u32, Option<&'a str>)>,
    /// MaxProcesses (a web garden).
    pub max_processes: Option<u32>,
}

/// Makes an application pool, started with the service.
pub fn create_pool(metabase: &Metabase, pool: &NewPool<'_>) -> Result<(), ProvisionError> {
    let name = pool.name;
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_control) {
        return Err(refused(format!("'{name}' is not a valid pool name")));
    }
    if Model::read(&metabase.snapshot()).pool(name).is_some() {
        return Err(refused(format!("application pool '{name}' exists")));
    }
    let key = path("/LM/W3SVC/AppPools")?.join(name)?;
    metabase.write(|t| {
        t.create_key(&key, "IIsApplicationPool")?;
        t.set_text(&key, "AppPoolAutoStart", &text(&["TRUE"]))?;
        if let Some((kind, user)) = pool.identity {
            t.set(
                &key,
                crate::model::ids::APP_POOL_IDENTITY_TYPE,
                metabase::Value::Dword(kind),
            )?;
            if let Some(user) = user {
                t.set(
                    &key,
                    crate::model::ids::WAM_USER_NAME,
                    metabase::Value::String(user.to_string()),
                )?;
            }
        }
        if let Some(n) = pool.max_processes {
            t.set(
                &key,
                crate::model::ids::MAX_PROCESSES,
                metabase::Value::Dword(n),
            )?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Deletes an application pool no application uses; its name as the
/// metabase spells it.
pub fn delete_pool(metabase: &Metabase, name: &str) -> Result<String, ProvisionError> {
    let model = Model::read(&metabase.snapshot());
    let Some(settings) = model.pool(name) else {
        return Err(refused(format!("no application pool '{name}'")));
    };
    let users: Vec<String> = model
        .sites
        .values()
        .flat_map(|s| s.apps.iter().map(move |a| (s.id, a)))
        .filter(|(_, a)| a.pool.eq_ignore_ascii_case(name))
        .map(|(id, a)| format!("site {id} {}", a.url))
        .collect();
    if !users.is_empty() {
        return Err(refused(format!(
            "application pool {} is used by {}: move them to another pool first",
            settings.name,
            users.join(", ")
        )));
    }
    let key = path("/LM/W3SVC/AppPools")?.join(&settings.name)?;
    metabase.write(|t| t.delete_key(&key))?;
    Ok(settings.name.clone())
}
