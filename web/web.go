// Package web holds callcat's dashboard: index.html and the script and
// stylesheet under assets/. They are plain files without a build step, and
// the binary embeds them.
package web

import "embed"

// FS holds index.html and assets/*. The HTTP API serves index.html at / and
// the rest at /assets/.
//
//go:embed index.html assets
var FS embed.FS
