/*
 * isapi_types.h: the Windows base types ISAPI's headers use, for LP64 Linux.
 *
 * inetsrv runs ISAPI extensions and filters built as shared objects
 * (`cc -shared -fPIC -I include`). Their source keeps Microsoft's names;
 * this header gives those names Linux meanings:
 *
 *   DWORD = uint32_t, BOOL = int, LPSTR = char *, handles are pointers,
 *   WINAPI is empty (the one calling convention of the platform).
 *
 * SetLastError and GetLastError keep the thread's last error in errno,
 * which the server and the module share: the server sets it before a
 * callback returns FALSE, as IIS does, and a module's own value is read
 * the same way.
 */
#ifndef INETSRV_ISAPI_TYPES_H
#define INETSRV_ISAPI_TYPES_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

typedef uint32_t DWORD;
typedef DWORD *LPDWORD;
typedef int BOOL;
typedef uint8_t BYTE;
typedef BYTE *LPBYTE;
typedef uint16_t WORD;
typedef uint16_t USHORT;
typedef uint32_t ULONG;
typedef uint64_t ULONGLONG;
typedef uintptr_t ULONG_PTR;
typedef ULONG_PTR *PULONG_PTR;
typedef char CHAR;
typedef CHAR *LPSTR;
typedef const CHAR *LPCSTR;
/* Windows' wide characters are UTF-16 code units, not Linux's wchar_t. */
typedef uint16_t WCHAR;
typedef WCHAR *LPWSTR;
typedef const WCHAR *LPCWSTR;
typedef void VOID;
typedef void *PVOID;
typedef void *LPVOID;
typedef const void *LPCVOID;
typedef void *HANDLE;

#ifndef WINAPI
#define WINAPI
#endif
#ifndef TRUE
#define TRUE 1
#endif
#ifndef FALSE
#define FALSE 0
#endif
#ifndef MAX_PATH
#define MAX_PATH 260
#endif
#ifndef MAKELONG
#define MAKELONG(low, high) ((DWORD)(((WORD)(low)) | (((DWORD)((WORD)(high))) << 16)))
#endif

/* The Win32 error codes ISAPI callbacks report ([MS-ERREF] 2.2). */
#define ERROR_SUCCESS 0
#define ERROR_FILE_NOT_FOUND 2
#define ERROR_ACCESS_DENIED 5
#define ERROR_INVALID_HANDLE 6
#define ERROR_NOT_ENOUGH_MEMORY 8
#define ERROR_NOT_SUPPORTED 50
#define ERROR_INVALID_PARAMETER 87
#define ERROR_INSUFFICIENT_BUFFER 122
#define ERROR_NO_DATA 232
#define ERROR_MORE_DATA 234
#define ERROR_INVALID_INDEX 1413

#ifndef SetLastError
#define SetLastError(code) ((void)(errno = (int)(code)))
#endif
#ifndef GetLastError
#define GetLastError() ((DWORD)errno)
#endif

#endif /* INETSRV_ISAPI_TYPES_H */
