// SPDX-License-Identifier: MIT
// Swagger UI on the embedded openapi.yaml, with nothing fetched from outside:
// no validator badge (validatorUrl: null), no external spec. "Authorize"
// takes an API key, an admin key or an operator token (bearer) and "Try it
// out" calls this same server.
'use strict';
window.addEventListener('DOMContentLoaded', function () {
  window.ui = window.SwaggerUIBundle({
    url: '/openapi.yaml',
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
    displayRequestDuration: true,
    docExpansion: 'list',
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
  });
});
