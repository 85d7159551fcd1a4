/* Cyrus SASL 2.1 server API. */
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
