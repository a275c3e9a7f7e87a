/* version.h - the one definition of the version string. */
#ifndef RINGSOCKS_VERSION_H
#define RINGSOCKS_VERSION_H

#define RINGSOCKS_VERSION "0.1.0"

#endif
