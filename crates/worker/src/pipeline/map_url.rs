//! Phase 3, map the URL: the settings of the metabase key it falls under
//! (with the physical path), which hooks may map elsewhere (filters'
//! URL_MAP).

use super::*;

impl Pipeline {
    pub(super) fn map_url(&self, x: &mut Exchange) -> Step {
        let Some(mut cfg) = x.config.url(x.site, &x.req.url.path) else {
            return Step::Refuse(HttpError::new(404, 0).win32(2), false);
        };
        // Only filters map a URL elsewhere: without them the path is not
        // copied out to be offered.
        let physical = cfg.physical.as_ref().filter(|_| x.filters.is_some());
        if let Some(physical) = physical {
            let before = physical.display().to_string();
            let mut path = before.clone();
            let site = x.site;
            let (hooks, req) = x.hooks_and_request();
            if !hooks.map_url(req, site, &mut path) {
                x.cfg = Some(cfg);
                return Step::Answer(x.hooks().answer());
            }
            if path != before {
                let mut changed = (*cfg).clone();
                changed.physical = Some(PathBuf::from(path));
                cfg = Arc::new(changed);
            }
        }
        x.cfg = Some(cfg);
        Step::Next
    }
}
