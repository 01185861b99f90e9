/* hello.c: the smallest useful ISAPI extension, written to Microsoft's
 * names as it would be for IIS. Build and map it:
 *
 *   cc -shared -fPIC -I include -o /opt/isapi/hello.so examples/isapi/hello.c
 *   inetsrv mb set W3SVC/1/ROOT/ScriptMaps ".hello,/opt/isapi/hello.so,1"
 *   inetsrv mb set W3SVC/WebSvcExtRestrictionList "0,*.dll" "1,/opt/isapi/hello.so,0,HELLO,Hello"
 *   curl http://localhost:8080/any.hello?name=you
 */
#include <stdio.h>
#include <string.h>

#include "httpext.h"

BOOL WINAPI GetExtensionVersion(HSE_VERSION_INFO *pVer)
{
    pVer->dwExtensionVersion = HSE_VERSION;
    strncpy(pVer->lpszExtensionDesc, "Hello, ISAPI", HSE_MAX_EXT_DLL_NAME_LEN - 1);
    pVer->lpszExtensionDesc[HSE_MAX_EXT_DLL_NAME_LEN - 1] = '\0';
    return TRUE;
}

DWORD WINAPI HttpExtensionProc(EXTENSION_CONTROL_BLOCK *pECB)
{
    char body[1024];
    char server[256];
    char agent[256];
    DWORD size = sizeof server;
    DWORD length;
    HSE_SEND_HEADER_EX_INFO head;
    char headers[128];

    if (!pECB->GetServerVariable(pECB->ConnID, "SERVER_NAME", server, &size))
        strcpy(server, "?");
    size = sizeof agent;
    if (!pECB->GetServerVariable(pECB->ConnID, "HTTP_USER_AGENT", agent, &size))
        strcpy(agent, "-");
    length = (DWORD)snprintf(body, sizeof body,
                             "Hello from ISAPI on %s: %s %s?%s (user agent %s)\n", server,
                             pECB->lpszMethod, pECB->lpszPathInfo, pECB->lpszQueryString, agent);
    if (length >= sizeof body)
        length = sizeof body - 1;

    snprintf(headers, sizeof headers,
             "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %u\r\n\r\n",
             (unsigned)length);
    head.pszStatus = "200 OK";
    head.cchStatus = (DWORD)strlen(head.pszStatus);
    head.pszHeader = headers;
    head.cchHeader = (DWORD)strlen(headers);
    head.fKeepConn = TRUE;
    if (!pECB->ServerSupportFunction(pECB->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &head, NULL,
                                     NULL))
        return HSE_STATUS_ERROR;
    if (!pECB->WriteClient(pECB->ConnID, body, &length, HSE_IO_SYNC))
        return HSE_STATUS_ERROR;
    return HSE_STATUS_SUCCESS_AND_KEEP_CONN;
}

BOOL WINAPI TerminateExtension(DWORD dwFlags)
{
    (void)dwFlags;
    return TRUE;
}
