//! The CGI handler: a script map naming a program (not a shared object),
//! or a URL to a program (`.exe`, `.cgi`) where Execute access allows;
//! the program runs when the response is sent ([`crate::cgi::run`]).
//! Also where a URL is split into its script and PATH_INFO
//! (`/app/index.php/extra`), as IIS does for script-mapped extensions.

use std::time::Duration;

use super::*;
use crate::cgi::{CgiCall, Script};
use crate::config::ScriptMap;

/// A CGI program chosen for the request.
pub(super) struct CgiHandler(pub CgiCall);

impl RequestHandler for CgiHandler {
    async fn handle(self, _pipeline: &Pipeline, _x: &mut Exchange) -> Result<Reply, HttpError> {
        let mut reply = Reply::new(200);
        reply.body = Body::Cgi(Box::new(self.0));
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
fn is_program_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".exe") || lower.ends_with(".cgi")
}

impl Pipeline {
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
                .is_some_and(|p| x.config.content.metadata(p).is_ok_and(|m| m.is_file()));
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

    /// The CGI program that answers for a script: `None` when no program
    /// is mapped to it.
    pub(super) fn cgi_call(
        &self,
        x: &Exchange,
        script: &ScriptUrl,
        ctx: &Ctx,
    ) -> Option<Result<CgiCall, HttpError>> {
        let cfg = &script.cfg;
        let name = script.name.rsplit('/').next().unwrap_or("");
        let physical = cfg.physical.clone()?;
        let (program, arg_template, needed, check_file) = match cfg
            .script_map(name, x.skip.as_deref())
        {
            Some(map) if !map.is_isapi() && map.command_line().0.starts_with('/') => {
                let (program, args) = map.command_line();
                (
                    PathBuf::from(program),
                    args,
                    needed_access(map),
                    map.check_file,
                )
            }
            Some(_) => return None,
            None if is_program_name(name) => (physical.clone(), Vec::new(), access::EXECUTE, true),
            None => return None,
        };
        if cfg.access & needed == 0 {
            return Some(Err(HttpError::new(403, 1).win32(5)));
        }
        if check_file
            && !x
                .config
                .content
                .metadata(&physical)
                .is_ok_and(|m| m.is_file())
        {
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
        let site_root = x.config.url(x.site, "/").and_then(|c| c.physical.clone());
        let path_translated = if script.path_info.is_empty() {
            physical.clone()
        } else {
            x.config
                .url(x.site, &script.path_info)
                .and_then(|c| c.physical.clone())
                .unwrap_or_else(|| physical.clone())
        };
        Some(Ok(CgiCall {
            script: Script {
                name: script.name.clone(),
                file: physical.clone(),
                path_info: script.path_info.clone(),
                path_translated,
                document_root: site_root,
                site_id: cfg.site_id,
                app_md_path: cfg.app_root.clone(),
                app_physical: physical.parent().map(PathBuf::from),
                user: ctx.user.clone(),
                auth_type: ctx.auth_type,
                authenticated: ctx.authenticated,
            },
            program,
            args,
            nph: name.to_ascii_lowercase().starts_with("nph-"),
            timeout: Duration::from_secs(u64::from(cfg.cgi_timeout.max(1))),
            reach: x.config.content.roots().map(PathBuf::from).collect(),
        }))
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
