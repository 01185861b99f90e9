//! Every setting the pipeline needs for one URL, read once from the
//! metabase snapshot and kept until the configuration changes: the worker
//! resolves a URL's inherited settings on its first request, not on each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use metabase::ipsec::IpSecurity;
use metabase::{GetMode, MbPath, Snapshot, Value};

use crate::content::Content;
use crate::site::{ids, Location};

/// More IDs: compression (`/LM/W3SVC/Filters/Compression/...`).
mod hc {
    pub const CACHE_CONTROL_HEADER: u32 = 2211;
    pub const EXPIRES_HEADER: u32 = 2212;
    pub const DO_STATIC: u32 = 2214;
    pub const SEND_CACHE_HEADERS: u32 = 2220;
    pub const NO_FOR_PROXIES: u32 = 2218;
    pub const NO_FOR_RANGE: u32 = 2219;
    pub const MIN_FILE_SIZE: u32 = 2226;
    pub const FILE_EXTENSIONS: u32 = 2238;
    pub const ON_DEMAND_LEVEL: u32 = 2242;
    pub const NO_FOR_HTTP10: u32 = 2217;
    pub const DO_STATIC_URL: u32 = 2256;
}

/// AccessSSLFlags bits.
pub mod access_ssl {
    pub const SSL: u32 = 0x8;
    pub const NEGOTIATE_CERT: u32 = 0x20;
    pub const REQUIRE_CERT: u32 = 0x40;
    pub const MAP_CERT: u32 = 0x80;
    pub const SSL128: u32 = 0x100;
}

/// What AccessSSLFlags refuse for a request, given its connection: 403.4
/// over plain http where SSL is required, 403.5 below a 128-bit key where
/// AccessSSL128 is set, 403.7 without a client certificate where one is
/// required (the binding must ask for them: `--client-cert`).
pub fn ssl_refusal(flags: u32, tls: Option<&httpapi::proto::TlsInfo>) -> Option<(u16, u16)> {
    let needs_ssl = flags & (access_ssl::SSL | access_ssl::SSL128 | access_ssl::REQUIRE_CERT) != 0;
    let Some(tls) = tls else {
        return needs_ssl.then_some((403, 4));
    };
    if flags & access_ssl::SSL128 != 0 && tls.key_size < 128 {
        return Some((403, 5));
    }
    if flags & access_ssl::REQUIRE_CERT != 0 && tls.client_certificate.is_none() {
        return Some((403, 7));
    }
    None
}

/// A MIME map: extension (with its dot, lower case) to type.
#[derive(Debug, Default)]
pub struct MimeTable {
    types: HashMap<String, String>,
    wildcard: Option<String>,
}

impl MimeTable {
    fn from_entries(entries: &[String]) -> MimeTable {
        let mut table = MimeTable::default();
        for entry in entries {
            let Some((ext, mime)) = entry.split_once(',') else {
                continue;
            };
            let (ext, mime) = (ext.trim(), mime.trim().to_string());
            if ext == "*" {
                table.wildcard = Some(mime);
            } else if !ext.is_empty() {
                let ext = if ext.starts_with('.') {
                    ext.to_ascii_lowercase()
                } else {
                    format!(".{}", ext.to_ascii_lowercase())
                };
                table.types.insert(ext, mime);
            }
        }
        table
    }

    fn get(&self, extension: &str) -> Option<&str> {
        self.types.get(extension).map(String::as_str)
    }
}

/// The extension of a file name, with its dot and in lower case (`""`
/// when it has none).
pub fn extension_of(name: &str) -> String {
    match name.rfind('.') {
        Some(i) if i > 0 => name[i..].to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// HttpRedirect, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub destination: String,
    pub exact: bool,
    pub child_only: bool,
    pub permanent: bool,
    /// The URL path of the key that sets it (suffixes are relative to it).
    pub base: String,
}

/// HttpExpires, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expires {
    /// `D, 0x<seconds>`: Cache-Control max-age.
    After(u32),
    /// `S, <HTTP date>`: an Expires header.
    At(String),
}

/// One HttpErrors entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomError {
    pub status: u16,
    /// `None` for `*`.
    pub substatus: Option<u16>,
    pub kind: CustomErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustomErrorKind {
    File(PathBuf),
    Url(String),
    Default,
}

/// The settings in force at one URL.
#[derive(Clone, Debug)]
pub struct UrlConfig {
    pub site_id: u32,
    pub mb_path: MbPath,
    pub physical: Option<PathBuf>,
    /// The URL and Path of the virtual directory that maps it.
    pub vdir: Option<(String, String)>,
    pub access: u32,
    pub access_ssl: u32,
    pub auth: u32,
    pub realm: String,
    pub browse: u32,
    pub default_docs: Vec<String>,
    pub redirect: Option<Redirect>,
    pub custom_headers: Vec<(String, String)>,
    pub expires: Option<Expires>,
    pub errors: Vec<CustomError>,
    pub max_entity: u64,
    /// `Some(None)` when IPSecurity is set but unreadable: refuse all.
    pub ip_security: Option<Option<IpSecurity>>,
    pub dont_log: bool,
    /// DoStaticCompression set here or above; `None` follows the global
    /// setting.
    pub compress_static: Option<bool>,
    /// ScriptMaps in force here: extensions handled by a script engine
    /// or ISAPI extension rather than sent as files.
    pub script_maps: Vec<ScriptMap>,
    /// UploadReadAheadSize: body bytes an extension is handed with the
    /// request.
    pub read_ahead: u32,
    /// CacheISAPI: extensions stay loaded between requests.
    pub cache_isapi: bool,
    /// The application the URL belongs to (APPL_MD_PATH,
    /// APPL_PHYSICAL_PATH), shared by its URLs' settings so that a request
    /// takes it without copying.
    pub app: Arc<Application>,
    /// CGITimeout, in seconds.
    pub cgi_timeout: u32,
    local_mime: Option<Arc<MimeTable>>,
    global_mime: Arc<MimeTable>,
}

/// The application a URL belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Application {
    /// Its metabase path (AppRoot): APPL_MD_PATH.
    pub md_path: String,
    /// APPL_PHYSICAL_PATH as given to programs: the directory the
    /// application's root maps to (IIS 6's "physical path that corresponds
    /// to the metabase path in APPL_MD_PATH", not the script's directory),
    /// ending in one `/`. Written once per application, not per request.
    pub physical_path: Option<String>,
}

impl Application {
    fn new(md_path: String, physical: Option<&Path>) -> Application {
        let physical_path = physical.map(|dir| {
            // A Path set with a trailing slash keeps it: one, not two.
            let mut text = dir.display().to_string();
            text.truncate(text.trim_end_matches('/').len());
            text.push('/');
            text
        });
        Application {
            md_path,
            physical_path,
        }
    }
}

/// One ScriptMaps entry, `extension,executable,flags[,verbs]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptMap {
    /// Lower-case with its dot (`.asp`), or `*` for a wildcard map.
    pub extension: String,
    pub executable: String,
    /// MD_SCRIPTMAPFLAG_SCRIPT (1): Script access suffices; without it
    /// the extension needs Execute access.
    pub script: bool,
    /// MD_SCRIPTMAPFLAG_CHECK_PATH_INFO (4): "Verify that file exists":
    /// a missing script is 404 before its handler runs.
    pub check_file: bool,
    /// The executable split as a command line (program, then arguments),
    /// once when the configuration is read rather than per request.
    words: Vec<String>,
}

impl ScriptMap {
    /// The program: the executable's first word, as IIS writes it (a
    /// path, then arguments in which `%s` stands for the script file and
    /// then the query's words: `/usr/bin/perl "%s" %s`).
    pub fn program(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// The arguments after the program.
    pub fn arguments(&self) -> &[String] {
        self.words.get(1..).unwrap_or_default()
    }

    /// Whether an ISAPI extension (a shared object) handles it, rather
    /// than a program (CGI).
    pub fn is_isapi(&self) -> bool {
        let program = self.program();
        program.ends_with(".so") || program.ends_with(".dll")
    }

    /// The FastCGI application it names (`fastcgi:NAME`).
    pub fn fastcgi_app(&self) -> Option<&str> {
        let rest = self.executable.trim();
        let prefix = rest.get(..8)?;
        prefix
            .eq_ignore_ascii_case("fastcgi:")
            .then(|| rest[8..].trim())
            .filter(|n| !n.is_empty())
    }
}

/// Splits a command line on blanks, with double quotes grouping.
pub fn split_command_line(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut current));
                    any = false;
                }
            }
            c => {
                current.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(current);
    }
    words
}

/// Who would handle a file, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Sent as it is (MimeMap decides its type).
    Static,
    /// A script-mapped extension; `script_access_suffices` as its flag says.
    ScriptMapped { script_access_suffices: bool },
    /// `.exe`, `.dll` or `.so`: a CGI program or an ISAPI extension.
    Executable,
}

/// `.asp,C:\WINDOWS\system32\inetsrv\asp.dll,5,GET,HEAD,POST`.
pub fn parse_script_map(text: &str) -> Option<ScriptMap> {
    let mut fields = text.split(',').map(str::trim);
    let extension = fields.next().filter(|e| !e.is_empty())?;
    let executable = fields.next().unwrap_or_default();
    let flags: u32 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let extension = if extension == "*" {
        "*".to_string()
    } else if extension.starts_with('.') {
        extension.to_ascii_lowercase()
    } else {
        format!(".{}", extension.to_ascii_lowercase())
    };
    Some(ScriptMap {
        extension,
        executable: executable.to_string(),
        script: flags & 1 != 0,
        check_file: flags & 4 != 0,
        words: split_command_line(executable),
    })
}

impl UrlConfig {
    /// The type of a file name, `None` when the map has none (404.3).
    pub fn mime_type(&self, name: &str) -> Option<&str> {
        let ext = extension_of(name);
        if let Some(local) = &self.local_mime {
            if let Some(t) = local.get(&ext) {
                return Some(t);
            }
        }
        if let Some(t) = self.global_mime.get(&ext) {
            return Some(t);
        }
        self.local_mime
            .as_ref()
            .and_then(|l| l.wildcard.as_deref())
            .or(self.global_mime.wildcard.as_deref())
    }

    /// The script map that takes a file of this name here: a wildcard
    /// map takes every request, else the map of its extension. `skip`
    /// names a wildcard module that has had its turn (a child request of
    /// its own, HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR).
    pub fn script_map(&self, name: &str, skip: Option<&Path>) -> Option<&ScriptMap> {
        // The extension as `extension_of` finds it, without allocating.
        let ext = match name.rfind('.') {
            Some(i) if i > 0 => &name[i..],
            _ => "",
        };
        let mapped = |m: &&ScriptMap| {
            if m.extension == "*" {
                return skip.is_none_or(|s| Path::new(&m.executable) != s);
            }
            !ext.is_empty() && m.extension.eq_ignore_ascii_case(ext)
        };
        self.script_maps.iter().find(mapped)
    }

    /// Who handles a file of this name here: a script map, then IIS's
    /// executables.
    pub fn handler(&self, name: &str, skip: Option<&Path>) -> Handler {
        let ext = match name.rfind('.') {
            Some(i) if i > 0 => &name[i..],
            _ => "",
        };
        if let Some(map) = self.script_map(name, skip) {
            return Handler::ScriptMapped {
                script_access_suffices: map.script,
            };
        }
        if ext.eq_ignore_ascii_case(".exe")
            || ext.eq_ignore_ascii_case(".dll")
            || ext.eq_ignore_ascii_case(".so")
        {
            return Handler::Executable;
        }
        Handler::Static
    }

    pub fn ip_allowed(&self, ip: &IpAddr) -> bool {
        match &self.ip_security {
            None => true,
            Some(Some(list)) => list.allows(ip),
            Some(None) => false,
        }
    }
}

/// Static compression as the `/LM/W3SVC/Filters/Compression` keys set it.
#[derive(Clone, Debug, Default)]
pub struct Compression {
    /// HcDoStaticCompression on Parameters.
    pub enabled: bool,
    /// Scheme name (`gzip`, `deflate`) and the extensions it compresses,
    /// in preference order.
    pub schemes: Vec<(String, Vec<String>, u32)>,
    pub min_size: u64,
    pub no_http10: bool,
    pub no_proxies: bool,
    pub no_range: bool,
    pub cache_headers: Option<(String, String)>,
    pub directory: Option<PathBuf>,
}

impl Compression {
    /// The settings, with the directory the service prepared for this
    /// pool's compressed copies.
    fn read(snapshot: &Snapshot, directory: Option<PathBuf>) -> Compression {
        let Ok(base) = MbPath::parse("/LM/W3SVC/Filters/Compression") else {
            return Compression::default();
        };
        let params = base.join("Parameters").unwrap_or_default();
        let dword = |path: &MbPath, id| snapshot.effective_dword(path, id).unwrap_or(0);
        let own_dword = |path: &MbPath, id| {
            snapshot
                .lookup(path, id, GetMode::Own)
                .ok()
                .flatten()
                .and_then(|(p, _)| p.value.as_dword())
        };
        let string = |path: &MbPath, id| match snapshot.effective(path, id) {
            Some(Value::String(s)) | Some(Value::ExpandSz(s)) => Some(s),
            _ => None,
        };
        let mut schemes = Vec::new();
        for name in ["gzip", "deflate"] {
            let Ok(path) = base.join(name) else { continue };
            if snapshot.find(&path).is_none() || own_dword(&path, hc::DO_STATIC) != Some(1) {
                continue;
            }
            let extensions = match snapshot.effective(&path, hc::FILE_EXTENSIONS) {
                Some(Value::MultiSz(v)) => v
                    .iter()
                    .flat_map(|e| e.split([' ', ',']))
                    .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                    .filter(|e| !e.is_empty())
                    .collect(),
                _ => Vec::new(),
            };
            let level = own_dword(&path, hc::ON_DEMAND_LEVEL).unwrap_or(10);
            schemes.push((name.to_string(), extensions, level));
        }
        Compression {
            enabled: own_dword(&params, hc::DO_STATIC) == Some(1) && !schemes.is_empty(),
            schemes,
            min_size: u64::from(own_dword(&params, hc::MIN_FILE_SIZE).unwrap_or(256)),
            no_http10: own_dword(&params, hc::NO_FOR_HTTP10).unwrap_or(1) == 1,
            no_proxies: dword(&params, hc::NO_FOR_PROXIES) == 1,
            no_range: dword(&params, hc::NO_FOR_RANGE) == 1,
            cache_headers: (dword(&params, hc::SEND_CACHE_HEADERS) == 1).then(|| {
                (
                    string(&params, hc::CACHE_CONTROL_HEADER).unwrap_or_default(),
                    string(&params, hc::EXPIRES_HEADER).unwrap_or_default(),
                )
            }),
            directory,
        }
    }

    /// The schemes that would compress a file with this extension.
    pub fn schemes_for(
        &self,
        extension: &str,
    ) -> impl Iterator<Item = &(String, Vec<String>, u32)> {
        let ext = extension.trim_start_matches('.').to_string();
        self.schemes
            .iter()
            .filter(move |(_, exts, _)| exts.contains(&ext))
    }
}

/// One configuration generation: a snapshot and what was read from it.
pub struct Config {
    pub snapshot: Arc<Snapshot>,
    pub compression: Compression,
    global_mime: Arc<MimeTable>,
    mime_tables: Mutex<HashMap<Vec<String>, Arc<MimeTable>>>,
    /// The applications met so far, by site and metabase path (an AppRoot
    /// outside its own site stands for that site's root).
    applications: Mutex<HashMap<(u32, String), Arc<Application>>>,
    /// The directories the service handed over, and what is beneath them.
    pub content: Content,
    /// Their paths, which every CGI and FastCGI program must reach (made
    /// once, shared by each request's call).
    pub content_roots: Arc<[PathBuf]>,
    /// Whether the listener keeps responses marked cacheable.
    pub listener_caches: bool,
    /// What paths were found to be, until a change says otherwise.
    pub meta: crate::changes::MetaCache,
    /// By site, then URL path (looked up without allocating).
    urls: Mutex<HashMap<u32, HashMap<String, Arc<UrlConfig>>>>,
    /// WebSvcExtRestrictionList: which modules may run.
    pub restrictions: crate::isapi::Restrictions,
    /// The FastCGI applications, by lower-case name.
    pub fastcgi_apps: HashMap<String, Arc<crate::fastcgi::AppSettings>>,
}

/// URLs remembered per generation; beyond this the memory starts over.
const MAX_CACHED_URLS: usize = 16 * 1024;

impl Config {
    pub fn new(
        snapshot: Arc<Snapshot>,
        compression_dir: Option<PathBuf>,
        content: Content,
    ) -> Config {
        let global_mime = match MbPath::parse("/LM/MimeMap")
            .ok()
            .and_then(|p| snapshot.effective(&p, ids::MIME_MAP))
        {
            Some(Value::MultiSz(entries)) => MimeTable::from_entries(&entries),
            _ => MimeTable::default(),
        };
        let restrictions = match MbPath::parse("/LM/W3SVC")
            .ok()
            .and_then(|p| snapshot.effective(&p, ids::WEB_SVC_EXT_RESTRICTION_LIST))
        {
            Some(Value::MultiSz(entries)) => crate::isapi::Restrictions::parse(&entries),
            _ => crate::isapi::Restrictions::default(),
        };
        Config {
            fastcgi_apps: crate::fastcgi::applications(&snapshot),
            restrictions,
            compression: Compression::read(&snapshot, compression_dir),
            content_roots: content.roots().map(PathBuf::from).collect(),
            content,
            listener_caches: true,
            meta: crate::changes::MetaCache::default(),
            snapshot,
            global_mime: Arc::new(global_mime),
            mime_tables: Mutex::new(HashMap::new()),
            applications: Mutex::new(HashMap::new()),
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// The settings of a decoded URL path of a site; `None` for a path
    /// that cannot be a metabase path.
    pub fn url(&self, site_id: u32, url_path: &str) -> Option<Arc<UrlConfig>> {
        if let Some(found) = lock(&self.urls).get(&site_id).and_then(|m| m.get(url_path)) {
            return Some(found.clone());
        }
        let resolved = Arc::new(self.resolve(site_id, url_path)?);
        let mut urls = lock(&self.urls);
        if urls.values().map(HashMap::len).sum::<usize>() >= MAX_CACHED_URLS {
            urls.clear();
        }
        urls.entry(site_id)
            .or_default()
            .insert(url_path.to_string(), resolved.clone());
        Some(resolved)
    }

    /// The application of `at`: AppRoot where set (else the site's root),
    /// and the directory that application's root URL maps to. Shared by
    /// every URL of one application (a handful per site), so resolved
    /// once each.
    fn application(&self, at: &Location, site_id: u32) -> Arc<Application> {
        let md_path = at
            .string(ids::APP_ROOT)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| at.site_root().to_string());
        let key = (site_id, md_path);
        let mut known = lock(&self.applications);
        if let Some(app) = known.get(&key) {
            return app.clone();
        }
        let md_path = &key.1;
        // The application's root as a URL of the site: AppRoot below the
        // site's ROOT key (an AppRoot elsewhere names no URL of this
        // site: the site's root stands for it).
        let url = MbPath::parse_relaxed(md_path)
            .ok()
            .and_then(|p| p.relative_to(&at.site_root()))
            .map(|below| format!("/{below}"))
            .unwrap_or_else(|| "/".to_string());
        let physical = Location::resolve(self.snapshot.clone(), site_id, &url)
            .or_else(|| Location::resolve(self.snapshot.clone(), site_id, "/"))
            .and_then(|l| l.physical);
        let app = Arc::new(Application::new(md_path.clone(), physical.as_deref()));
        if known.len() >= MAX_CACHED_URLS {
            known.clear();
        }
        known.insert(key, app.clone());
        app
    }

    fn resolve(&self, site_id: u32, url_path: &str) -> Option<UrlConfig> {
        let at = Location::resolve(self.snapshot.clone(), site_id, url_path)?;
        let local_mime =
            match self
                .snapshot
                .lookup(&at.mb_path, ids::MIME_MAP, GetMode::PartialPath)
            {
                // The global map is at /LM/MimeMap, above every site.
                Ok(Some((p, depth))) if depth > 2 => match &p.value {
                    Value::MultiSz(entries) => {
                        let mut tables = lock(&self.mime_tables);
                        Some(
                            tables
                                .entry(entries.clone())
                                .or_insert_with(|| Arc::new(MimeTable::from_entries(entries)))
                                .clone(),
                        )
                    }
                    _ => None,
                },
                _ => None,
            };
        let redirect =
            match self
                .snapshot
                .lookup(&at.mb_path, ids::HTTP_REDIRECT, GetMode::PartialPath)
            {
                Ok(Some((p, depth))) => p.value.as_str().and_then(|text| {
                    let base_parts = &at.mb_path.parts()[4.min(depth)..depth];
                    let base = format!("/{}", base_parts.join("/"));
                    parse_redirect(text, &base)
                }),
                _ => None,
            };
        let ip_security = match self.snapshot.lookup(
            &at.mb_path,
            ids::IP_SECURITY,
            GetMode::PartialPath,
        ) {
            Ok(Some((p, _))) => Some(match &p.value {
                Value::Binary(bytes) if bytes.is_empty() => Some(IpSecurity::default()),
                Value::Binary(bytes) => {
                    let parsed = IpSecurity::from_bytes(bytes);
                    if parsed.is_none() {
                        tracing::warn!(path = %at.mb_path, "IPSecurity is not in inetsrv's form; refusing every client");
                    }
                    parsed
                }
                _ => None,
            }),
            _ => None,
        };
        let compress_static = self
            .snapshot
            .lookup(&at.mb_path, hc::DO_STATIC_URL, GetMode::PartialPath)
            .ok()
            .flatten()
            .and_then(|(p, _)| p.value.as_dword())
            .map(|v| v != 0);
        Some(UrlConfig {
            site_id,
            script_maps: at
                .list(ids::SCRIPT_MAPS)
                .iter()
                .filter_map(|m| parse_script_map(m))
                .collect(),
            read_ahead: at.dword(ids::UPLOAD_READ_AHEAD_SIZE),
            cache_isapi: at.dword(ids::CACHE_ISAPI) != 0,
            cgi_timeout: at.dword(ids::CGI_TIMEOUT),
            app: self.application(&at, site_id),
            access: at.dword(ids::ACCESS_FLAGS),
            access_ssl: at.dword(ids::ACCESS_SSL_FLAGS),
            auth: at.dword(ids::AUTH_FLAGS),
            realm: at.string(ids::REALM).unwrap_or_default(),
            browse: at.dword(ids::DIR_BROWSE_FLAGS),
            default_docs: at
                .string(ids::DEFAULT_DOC)
                .unwrap_or_default()
                .split(',')
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty() && !d.contains('/'))
                .collect(),
            redirect,
            custom_headers: at
                .list(ids::HTTP_CUSTOM_HEADERS)
                .iter()
                .filter_map(|h| {
                    let (name, value) = h.split_once(':')?;
                    let name = name.trim();
                    (!name.is_empty() && name.bytes().all(httpapi::proto::is_tchar))
                        .then(|| (name.to_string(), value.trim().to_string()))
                })
                .collect(),
            expires: at
                .explicit_string(ids::HTTP_EXPIRES)
                .and_then(|t| parse_expires(&t)),
            errors: at
                .list(ids::HTTP_ERRORS)
                .iter()
                .filter_map(|e| parse_custom_error(e))
                .collect(),
            max_entity: u64::from(at.dword(ids::MAX_REQUEST_ENTITY_ALLOWED)),
            ip_security,
            dont_log: at.dword(ids::DONT_LOG) != 0,
            compress_static,
            physical: at.physical,
            vdir: at.vdir,
            mb_path: at.mb_path,
            local_mime,
            global_mime: self.global_mime.clone(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `destination[, EXACT_DESTINATION][, CHILD_ONLY][, PERMANENT]`.
pub fn parse_redirect(text: &str, base: &str) -> Option<Redirect> {
    let mut parts = text.split(',').map(str::trim);
    let destination = parts.next()?.to_string();
    if destination.is_empty() {
        return None;
    }
    let mut r = Redirect {
        destination,
        exact: false,
        child_only: false,
        permanent: false,
        base: base.to_string(),
    };
    for option in parts {
        match option.to_ascii_uppercase().as_str() {
            "EXACT_DESTINATION" => r.exact = true,
            "CHILD_ONLY" => r.child_only = true,
            "PERMANENT" => r.permanent = true,
            _ => {}
        }
    }
    Some(r)
}

/// `D, 0x<seconds>` or `S, <date>`; empty means none.
pub fn parse_expires(text: &str) -> Option<Expires> {
    let (kind, value) = text.split_once(',')?;
    let value = value.trim();
    match kind.trim().to_ascii_uppercase().as_str() {
        "D" => {
            let secs = match value
                .strip_prefix("0x")
                .or_else(|| value.strip_prefix("0X"))
            {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => value.parse().ok()?,
            };
            Some(Expires::After(secs))
        }
        "S" => httpapi::dates::parse_http_date(value)
            .map(|t| Expires::At(httpapi::dates::http_date(t))),
        _ => None,
    }
}

/// `status,substatus|*,FILE|URL|DEFAULT[,target]`.
pub fn parse_custom_error(text: &str) -> Option<CustomError> {
    let mut parts = text.splitn(4, ',');
    let status: u16 = parts.next()?.trim().parse().ok()?;
    let substatus = match parts.next()?.trim() {
        "*" => None,
        s => Some(s.parse().ok()?),
    };
    let kind = match parts.next()?.trim().to_ascii_uppercase().as_str() {
        "FILE" => CustomErrorKind::File(PathBuf::from(parts.next()?.trim())),
        "URL" => CustomErrorKind::Url(parts.next()?.trim().to_string()),
        "DEFAULT" => CustomErrorKind::Default,
        _ => return None,
    };
    Some(CustomError {
        status,
        substatus,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_applications_physical_path_ends_in_one_slash() {
        let text = |dir: Option<&str>| {
            Application::new("/LM/W3SVC/1/ROOT".into(), dir.map(Path::new)).physical_path
        };
        assert_eq!(text(Some("/srv/www")).as_deref(), Some("/srv/www/"));
        assert_eq!(text(Some("/srv/www/")).as_deref(), Some("/srv/www/"));
        assert_eq!(text(Some("/srv/www//")).as_deref(), Some("/srv/www/"));
        assert_eq!(text(Some("/")).as_deref(), Some("/"));
        assert_eq!(text(None), None);
    }

    #[test]
    fn script_maps_parse_as_iis_writes_them() {
        let map = parse_script_map(".ASP,C:\\inetsrv\\asp.dll,5,GET,HEAD,POST").unwrap();
        assert_eq!(map.extension, ".asp");
        assert!(map.script);
        assert_eq!(
            parse_script_map("py,python.dll,0").unwrap().extension,
            ".py"
        );
        assert!(!parse_script_map("py,python.dll,4").unwrap().script);
        assert_eq!(parse_script_map("*,wild.dll,0").unwrap().extension, "*");
        assert_eq!(parse_script_map(""), None);
        assert_eq!(parse_script_map(",x.dll,1"), None);
    }

    #[test]
    fn a_script_maps_program_is_its_command_lines_first_word() {
        for (executable, program, arguments) in [
            ("/opt/isapi/hello.so", "/opt/isapi/hello.so", &[][..]),
            (
                "  /usr/bin/perl \"%s\" %s",
                "/usr/bin/perl",
                &["%s", "%s"][..],
            ),
            ("\"/opt/my dir/x.so\"", "/opt/my dir/x.so", &[][..]),
            (
                "\"/opt/my dir/x.cgi\" -q %s",
                "/opt/my dir/x.cgi",
                &["-q", "%s"][..],
            ),
            ("\"/opt/a\"b.so -x", "/opt/ab.so", &["-x"][..]),
            ("", "", &[][..]),
        ] {
            let map = parse_script_map(&format!(".x,{executable},1")).unwrap();
            assert_eq!(map.program(), program, "{executable:?}");
            assert_eq!(map.arguments(), arguments, "{executable:?}");
        }
        assert!(parse_script_map(".x,\"/opt/a\"b.so -x,1")
            .unwrap()
            .is_isapi());
        assert!(!parse_script_map(".x,/usr/bin/php-cgi x.so,1")
            .unwrap()
            .is_isapi());
    }
    use metabase::Metabase;

    use crate::site::testing::{p, set};

    fn config() -> Config {
        let mb = Metabase::empty();
        mb.write(|t| {
            t.create_key(&p("/LM/MimeMap"), "IIsMimeMap")?;
            set(
                t,
                "/LM/MimeMap",
                "MimeMap",
                &[".htm,text/html", ".TXT,text/plain"],
            )?;
            t.create_key(&p("/LM/W3SVC"), "IIsWebService")?;
            set(t, "/LM/W3SVC", "DefaultDoc", &["index.htm, default.htm"])?;
            t.create_key(&p("/LM/W3SVC/1"), "IIsWebServer")?;
            t.create_key(&p("/LM/W3SVC/1/ROOT"), "IIsWebVirtualDir")?;
            set(t, "/LM/W3SVC/1/ROOT", "Path", &["/srv/www"])?;
            set(
                t,
                "/LM/W3SVC/1/ROOT",
                "HttpCustomHeaders",
                &["X-Site: one", "bad header: x"],
            )?;
            t.create_key(&p("/LM/W3SVC/1/ROOT/old"), "IIsWebDirectory")?;
            set(
                t,
                "/LM/W3SVC/1/ROOT/old",
                "HttpRedirect",
                &["/new, PERMANENT"],
            )?;
            set(t, "/LM/W3SVC/1/ROOT/old", "HttpExpires", &["D, 0x3c"])?;
            set(
                t,
                "/LM/W3SVC/1/ROOT/old",
                "IPSecurity",
                &["GrantByDefault=FALSE; IPGrant=127.0.0.1"],
            )?;
            set(
                t,
                "/LM/W3SVC/1/ROOT/old",
                "MimeMap",
                &["*,application/octet-stream"],
            )?;
            set(
                t,
                "/LM/W3SVC/1/ROOT/old",
                "HttpErrors",
                &["404,*,FILE,/srv/404.htm", "500,12,URL,/e.htm", "x"],
            )
        })
        .unwrap();
        Config::new(mb.snapshot(), None, Content::default())
    }

    #[test]
    fn settings_are_inherited_and_cached() {
        let c = config();
        let root = c.url(1, "/a.htm").unwrap();
        assert_eq!(root.default_docs, vec!["index.htm", "default.htm"]);
        assert_eq!(
            root.custom_headers,
            vec![("X-Site".to_string(), "one".to_string())]
        );
        assert_eq!(root.redirect, None);
        assert_eq!(root.expires, None, "the schema default does not apply");
        assert!(root.ip_allowed(&"10.0.0.1".parse().unwrap()));
        assert_eq!(root.mime_type("A.TXT"), Some("text/plain"));
        assert_eq!(root.mime_type("a.bin"), None);
        assert!(Arc::ptr_eq(&root, &c.url(1, "/a.htm").unwrap()));

        let old = c.url(1, "/old/sub/page.htm").unwrap();
        let r = old.redirect.as_ref().unwrap();
        assert_eq!(
            (r.destination.as_str(), r.permanent, r.base.as_str()),
            ("/new", true, "/old")
        );
        assert_eq!(old.expires, Some(Expires::After(60)));
        assert!(old.ip_allowed(&"127.0.0.1".parse().unwrap()));
        assert!(!old.ip_allowed(&"127.0.0.2".parse().unwrap()));
        assert_eq!(
            old.mime_type("a.htm"),
            Some("text/html"),
            "the global map still applies"
        );
        assert_eq!(
            old.mime_type("a.bin"),
            Some("application/octet-stream"),
            "wildcard"
        );
        assert_eq!(old.errors.len(), 2);
        assert_eq!(old.errors[1].kind, CustomErrorKind::Url("/e.htm".into()));
        assert!(!c.compression.enabled);
    }

    #[test]
    fn access_ssl_flags_refuse_as_iis_does() {
        use httpapi::proto::{ClientCertInfo, TlsInfo};
        let tls = |key_size, client: bool| TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            key_size,
            server_name: None,
            server_subject: String::new(),
            server_issuer: String::new(),
            client_certificate: client.then(ClientCertInfo::default),
        };
        assert_eq!(ssl_refusal(0, None), None);
        assert_eq!(ssl_refusal(access_ssl::SSL, None), Some((403, 4)));
        assert_eq!(ssl_refusal(access_ssl::SSL, Some(&tls(128, false))), None);
        assert_eq!(ssl_refusal(access_ssl::SSL128, None), Some((403, 4)));
        assert_eq!(
            ssl_refusal(access_ssl::SSL128, Some(&tls(56, false))),
            Some((403, 5))
        );
        assert_eq!(
            ssl_refusal(access_ssl::SSL128, Some(&tls(256, false))),
            None
        );
        let require = access_ssl::SSL | access_ssl::NEGOTIATE_CERT | access_ssl::REQUIRE_CERT;
        assert_eq!(ssl_refusal(require, Some(&tls(128, false))), Some((403, 7)));
        assert_eq!(ssl_refusal(require, Some(&tls(128, true))), None);
        assert_eq!(
            ssl_refusal(access_ssl::NEGOTIATE_CERT, Some(&tls(128, false))),
            None
        );
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_expires("D, 0x15180"), Some(Expires::After(86400)));
        assert_eq!(parse_expires("D, 0"), Some(Expires::After(0)));
        assert_eq!(
            parse_expires("S, Wed, 01 Jan 2031 00:00:00 GMT"),
            Some(Expires::At("Wed, 01 Jan 2031 00:00:00 GMT".into()))
        );
        assert_eq!(parse_expires(""), None);
        assert_eq!(parse_expires("S, never"), None);
        let r = parse_redirect("http://x/$S, EXACT_DESTINATION, CHILD_ONLY", "/a").unwrap();
        assert!(r.exact && r.child_only && !r.permanent);
        assert_eq!(parse_redirect("", "/"), None);
        assert_eq!(
            parse_custom_error("404,3,DEFAULT"),
            Some(CustomError {
                status: 404,
                substatus: Some(3),
                kind: CustomErrorKind::Default
            })
        );
        assert_eq!(parse_custom_error("abc,*,FILE,/x"), None);
    }
}
