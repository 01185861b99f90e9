//! Error responses as IIS 6 words them: a status, a sub-status (the 3 of
//! 404.3) saying exactly why, and a built-in page used when HttpErrors
//! names no custom one.

/// An error the pipeline answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub substatus: u16,
    /// The Win32 error behind it, for the log (2: file not found, 5:
    /// access denied).
    pub win32: u32,
}

impl HttpError {
    pub const fn new(status: u16, substatus: u16) -> HttpError {
        HttpError {
            status,
            substatus,
            win32: 0,
        }
    }

    pub const fn win32(mut self, code: u32) -> HttpError {
        self.win32 = code;
        self
    }

    pub fn reason(&self) -> &'static str {
        match self.status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Request Entity Too Large",
            416 => "Requested Range Not Satisfiable",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            _ => "Error",
        }
    }

    /// IIS 6's description of the sub-status.
    pub fn description(&self) -> &'static str {
        match (self.status, self.substatus) {
            (401, 1) => "Logon failed.",
            (401, 2) => "Logon failed due to server configuration.",
            (401, 3) => "Unauthorized due to ACL on resource.",
            (403, 1) => "Execute access denied.",
            (403, 2) => "Read access denied.",
            (403, 3) => "Write access denied.",
            (403, 4) => "SSL required.",
            (403, 5) => "SSL 128 required.",
            (403, 7) => "Client certificate required.",
            (403, 6) => "IP address rejected.",
            (403, 14) => "Directory listing denied.",
            (403, 18) => "Cannot execute request from that application pool.",
            (403, _) => "Access is denied.",
            (404, 2) => "Lockdown policy prevents this request.",
            (404, 3) => "MIME map policy prevents this request.",
            (404, _) => "File or directory not found.",
            (405, _) => "HTTP verb used to access this page is not allowed.",
            (409, _) => "The parent directory does not exist.",
            (411, _) => "A Content-Length header is required.",
            (412, _) => "Precondition failed.",
            (413, _) => "Request entity too large.",
            (416, _) => "Requested range not satisfiable.",
            (500, _) => "Internal server error.",
            (501, _) => "Header values specify a method that is not implemented.",
            _ => "The request could not be served.",
        }
    }

    /// The page's headline, as the IIS 6 pages put it.
    fn title(&self) -> &'static str {
        match (self.status, self.substatus) {
            (403, 14) => "Directory Listing Denied",
            (401, _) | (403, _) => "You are not authorized to view this page",
            (404, _) => "The page cannot be found",
            (405, _) => "The page cannot be displayed",
            (413, _) => "The page cannot be displayed",
            _ => "The page cannot be displayed",
        }
    }

    /// `404.3` (or `404` for sub-status 0).
    pub fn code(&self) -> String {
        if self.substatus == 0 {
            self.status.to_string()
        } else {
            format!("{}.{}", self.status, self.substatus)
        }
    }

    /// The built-in page.
    pub fn page(&self) -> String {
        format!(
            "<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\r\n\
             <style>body{{font-family:Verdana,sans-serif;font-size:.8em;margin:2em}}h1{{font-size:1.3em}}</style></head>\r\n\
             <body><h1>{title}</h1>\r\n<p>HTTP Error {code} - {reason}: {description}</p>\r\n\
             <hr><p>inetsrv</p></body></html>\r\n",
            title = self.title(),
            code = self.code(),
            reason = self.reason(),
            description = self.description(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_say_what_went_wrong() {
        let e = HttpError::new(404, 3);
        assert_eq!(e.code(), "404.3");
        let page = e.page();
        assert!(
            page.contains("HTTP Error 404.3 - Not Found: MIME map policy prevents this request.")
        );
        assert!(page.contains("<title>The page cannot be found</title>"));
        assert_eq!(HttpError::new(404, 0).code(), "404");
        assert!(HttpError::new(403, 14)
            .page()
            .contains("Directory Listing Denied"));
    }
}
