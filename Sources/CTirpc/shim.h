/* libtirpc for rpcbind registration. <poll.h> first, or svc_pollfd imports as opaque. */
#include <poll.h>
#include <rpc/rpc.h>
#include <rpc/rpcb_clnt.h>
#include <netconfig.h>
