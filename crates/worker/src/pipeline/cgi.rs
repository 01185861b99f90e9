//! The CGI handler: a script map naming a program (not a shared object),
//! or a URL to a program (`.exe`, `.cgi`) where Execute access allows;
//! the program runs when the response is sent ([`crate::cgi::run`]).
//! Also where a URL is split into its script and PATH_INFO
//! (`/app/index.php/extra`), as IIS does for script-mapped extensions.

use std::time::Duration;

use super::*;
use crate::cgi::{CgiCall, Script};
use crate::config::ScriptMap;

/// A program chosen for the request: a CGI program, or a FastCGI
/// application.
pub(super) enum Gateway {
    Cgi(CgiCall),
    FastCgi(crate::fastcgi::FastCgiCall),
}

impl RequestHandler for Gateway {
    async fn handle(self, _pipeline: &Pipeline, _x: &mut Exchange) -> Result<Reply, HttpError> {
        let mut reply = Reply::new(200);
        reply.body = match self {
            Gateway::Cgi(call) => Body::Cgi(Box::new(call)),
            Gateway::FastCgi(call) => Body::FastCgi(Box::new(call)),
        };
        Ok(reply)
    }
}

/// The script part of a URL and what follows it.
pub(super) struct ScriptUrl {
    pub cfg: Arc<UrlConfig>,
    pub name: String,
    pub path_info: String,
}

/// Whether a file name is one a program handles here (a script map that
/// is not a wildcard, or a program itself).
fn is_gateway_name(cfg: &UrlConfig, name: &str) -> bool {
    let ext = match name.rfind('.') {
        Some(i) if i > 0 => &name[i..],
        _ => return false,
    };
    is_program_name(name)
        || cfg
            .script_maps
            .iter()
            .any(|m| m.extension != "*" && m.extension.eq_ignore_ascii_case(ext))
}

/// `.exe` and `.cgi`: programs run as CGI where Execute access allows.
pub(super) fn is_program_name(name: &str) -> bool {
    let ends = |ext: &str| {
        name.len() > ext.len()
            && name.as_bytes()[name.len() - ext.len()..].eq_ignore_ascii_case(ext.as_bytes())
    };
    ends(".exe") || ends(".cgi")
}

impl Pipeline {
    /// Whether `path` is a file, as the worker remembers it until inotify
    /// says it changed (the static handler's lookup).
    fn is_file(&self, x: &Exchange, path: &Path) -> bool {
        self.changes
            .metadata(&x.config.meta, &x.config.content, path)
            .is_ok_and(|m| m.is_file())
    }

    /// A directory's default document that a program handles
    /// (`index.php`): the first of DefaultDoc that exists, when it is one
    /// a program handles (a static one is the static handler's).
    pub(super) fn default_document_script(
        &self,
        x: &Exchange,
        cfg: &UrlConfig,
    ) -> Option<ScriptUrl> {
        let path = &x.req.url.path;
        if !path.ends_with('/') || cfg.browse & browse::ENABLE_DEFAULT_DOC == 0 {
            return None;
        }
        let dir = cfg.physical.as_ref()?;
        let doc = cfg
            .default_docs
            .iter()
            .find(|d| self.is_file(x, &dir.join(d)))?;
        if !is_gateway_name(cfg, doc) {
            return None;
        }
        let name = format!("{path}{doc}");
        Some(ScriptUrl {
            cfg: x.config.url(x.site, &name)?,
            name,
            path_info: String::new(),
        })
    }

    /// Splits `/dir/script.php/more` into the script and PATH_INFO when
    /// the URL as a whole names no file: the first segment whose
    /// extension a program handles and that is a file is the script.
    pub(super) fn split_script(&self, x: &Exchange, cfg: &UrlConfig) -> Option<ScriptUrl> {
        let path = &x.req.url.path;
        let mut from = 1;
        while let Some(slash) = path[from..].find('/') {
            let end = from + slash;
            let segment = &path[from..end];
            from = end + 1;
            if !is_gateway_name(cfg, segment) {
                continue;
            }
            let prefix = &path[..end];
            let script_cfg = x.config.url(x.site, prefix)?;
            let is_file = script_cfg
                .physical
                .as_ref()
                .is_some_and(|p| self.is_file(x, p));
            if is_file {
                return Some(ScriptUrl {
                    cfg: script_cfg,
                    name: prefix.to_string(),
                    path_info: path[end..].to_string(),
                });
            }
        }
        None
    }

    /// The program that answers for a script (CGI or FastCGI): `None`
    /// when none is mapped to it.
    pub(super) fn gateway_call(
        &self,
        x: &Exchange,
        script: &ScriptUrl,
        ctx: &Ctx,
    ) -> Option<Result<Gateway, HttpError>> {
        let cfg = &script.cfg;
        let name = script.name.rsplit('/').next().unwrap_or("");
        let physical = cfg.physical.clone()?;
        if let Some(map) = cfg.script_map(name, x.skip.as_deref()) {
            if let Some(app) = map.fastcgi_app() {
                return Some(self.fastcgi_call(x, script, ctx, map, app));
            }
        }
        let (program, arg_template, needed, check_file) = match cfg
            .script_map(name, x.skip.as_deref())
        {
            Some(map) if !map.is_isapi() && map.program().starts_with('/') => (
                PathBuf::from(map.program()),
                map.arguments().to_vec(),
                needed_access(map),
                map.check_file,
            ),
            Some(_) => return None,
            None if is_program_name(name) => (physical.clone(), Vec::new(), access::EXECUTE, true),
            None => return None,
        };
        if cfg.access & needed == 0 {
            return Some(Err(HttpError::new(403, 1).win32(5)));
        }
        if check_file && !self.is_file(x, &physical) {
            return Some(Err(HttpError::new(404, 0).win32(2)));
        }
        if !x
            .config
            .restrictions
            .allows_program(&program.to_string_lossy())
        {
            return Some(Err(HttpError::new(404, 2).win32(1260)));
        }
        let query_words = query_words(&x.req.url.query);
        let mut args = Vec::new();
        let mut substituted = 0;
        for arg in arg_template {
            if arg.contains("%s") {
                // The first %s is the script, the second the query's words.
                substituted += 1;
                if substituted == 1 {
                    args.push(arg.replace("%s", &physical.display().to_string()));
                } else if arg == "%s" {
                    args.extend(query_words.iter().cloned());
                } else {
                    args.push(arg.replace("%s", &query_words.join(" ")));
                }
            } else {
                args.push(arg);
            }
        }
        if is_program_name(name) && cfg.script_map(name, x.skip.as_deref()).is_none() {
            // RFC 3875 §4.4: an ISINDEX query is the command line.
            args = query_words;
        }
        Some(Ok(Gateway::Cgi(CgiCall {
            script: script_facts(x, script, ctx, &physical),
            program,
            args,
            nph: name.to_ascii_lowercase().starts_with("nph-"),
            timeout: Duration::from_secs(u64::from(cfg.cgi_timeout.max(1))),
            reach: x.config.content_roots.clone(),
        })))
    }

    /// A script map naming a FastCGI application (`fastcgi:NAME`).
    fn fastcgi_call(
        &self,
        x: &Exchange,
        script: &ScriptUrl,
        ctx: &Ctx,
        map: &ScriptMap,
        app: &str,
    ) -> Result<Gateway, HttpError> {
        let cfg = &script.cfg;
        if cfg.access & needed_access(map) == 0 {
            return Err(HttpError::new(403, 1).win32(5));
        }
        let physical = cfg
            .physical
            .clone()
            .ok_or(HttpError::new(404, 0).win32(3))?;
        let Some(settings) = x.config.fastcgi_apps.get(&app.to_ascii_lowercase()) else {
            tracing::error!(application = app, "a script map names a FastCGI application that is not configured (inetsrv fastcgi list)");
            return Err(HttpError::new(500, 0));
        };
        if map.check_file && !self.is_file(x, &physical) {
            return Err(HttpError::new(404, 0).win32(2));
        }
        if !x
            .config
            .restrictions
            .allows_program(&settings.exe.to_string_lossy())
        {
            return Err(HttpError::new(404, 2).win32(1260));
        }
        Ok(Gateway::FastCgi(crate::fastcgi::FastCgiCall {
            app: settings.clone(),
            script: script_facts(x, script, ctx, &physical),
            reach: x.config.content_roots.clone(),
        }))
    }
}

/// What the meta-variables say about the script.
fn script_facts(x: &Exchange, script: &ScriptUrl, ctx: &Ctx, physical: &Path) -> Script {
    let cfg = &script.cfg;
    let site_root = x.config.url(x.site, "/").and_then(|c| c.physical.clone());
    let path_translated = if script.path_info.is_empty() {
        None
    } else {
        x.config
            .url(x.site, &script.path_info)
            .and_then(|c| c.physical.clone())
    };
    Script {
        name: script.name.clone(),
        file: physical.to_path_buf(),
        path_info: script.path_info.clone(),
        path_translated,
        document_root: site_root,
        site_id: cfg.site_id,
        app: cfg.app.clone(),
        user: ctx.user.clone(),
        auth_type: ctx.auth_type,
        authenticated: ctx.authenticated,
    }
}

fn needed_access(map: &ScriptMap) -> u32 {
    if map.script {
        access::SCRIPT | access::EXECUTE
    } else {
        access::EXECUTE
    }
}

/// An ISINDEX query's words (RFC 3875 §4.4): only for a query without
/// `=`, split at `+` and decoded.
fn query_words(query: &str) -> Vec<String> {
    if query.is_empty() || query.contains('=') {
        return Vec::new();
    }
    query
        .split('+')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let bytes = w.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                let hex = (bytes[i] == b'%')
                    .then(|| bytes.get(i + 1..i + 3))
                    .flatten()
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isindex_queries_become_words_and_forms_do_not() {
        assert_eq!(query_words("a+b%20c"), vec!["a", "b c"]);
        assert!(query_words("a=1").is_empty());
        assert!(query_words("").is_empty());
    }

    #[test]
    fn program_names_are_exe_and_cgi() {
        assert!(is_program_name("x.CGI"));
        assert!(is_program_name("tool.exe"));
        assert!(!is_program_name("x.php"));
    }
}
