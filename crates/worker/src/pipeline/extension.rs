//! The ISAPI extension handler: a script map (or wildcard map) naming a
//! shared object, or a URL to the module itself; the extension runs when
//! the response is sent ([`crate::isapi::run`]), with the request's
//! filters.

use super::*;

/// An extension chosen for the request.
pub(super) struct ExtensionHandler(pub crate::isapi::Call);

impl RequestHandler for ExtensionHandler {
    async fn handle(self, _pipeline: &Pipeline, _x: &mut Exchange) -> Result<Reply, HttpError> {
        let mut reply = Reply::new(200);
        reply.body = Body::Extension(Box::new(self.0));
        Ok(reply)
    }
}

impl Pipeline {
    /// The ISAPI extension that answers this request: a script map (or
    /// wildcard map) naming a shared object by its absolute path, where
    /// the access flags let it run and WebSvcExtRestrictionList allows
    /// it; `None` when no extension is mapped here.
    pub(super) fn extension_call(
        &self,
        config: &Config,
        cfg: &Arc<UrlConfig>,
        ctx: &Ctx,
        name: &str,
        skip: Option<&Path>,
    ) -> Option<Result<crate::isapi::Call, HttpError>> {
        let (module, script) = match cfg.script_map(name, skip) {
            Some(map) if map.is_isapi() && map.program().starts_with('/') => {
                (PathBuf::from(map.program()), map.script)
            }
            // A program: the CGI handler's.
            Some(map) if map.program().starts_with('/') => return None,
            // A Windows path (asp.dll): nothing here can run it (404.2
            // from dynamic_content, as IIS for a prohibited extension).
            Some(_) => return None,
            // A URL to a module itself, where Execute access allows it.
            None if name.ends_with(".so") => {
                let module = cfg.physical.clone()?;
                let is_file = config.content.metadata(&module).is_ok_and(|m| m.is_file());
                if cfg.access & access::EXECUTE != 0 && !is_file {
                    return Some(Err(HttpError::new(404, 0).win32(2)));
                }
                (module, false)
            }
            None => return None,
        };
        let needed = if script {
            access::SCRIPT | access::EXECUTE
        } else {
            access::EXECUTE
        };
        if cfg.access & needed == 0 {
            return Some(Err(HttpError::new(403, 1).win32(5)));
        }
        if !config
            .restrictions
            .allows_extension(&module.to_string_lossy())
        {
            return Some(Err(HttpError::new(404, 2).win32(1260)));
        }
        Some(Ok(crate::isapi::Call {
            module,
            cache: cfg.cache_isapi,
            physical: cfg.physical.clone(),
            site_id: cfg.site_id,
            app: cfg.app.clone(),
            user: ctx.user.clone(),
            auth_type: ctx.auth_type,
            read_ahead: cfg.read_ahead as usize,
        }))
    }
}
