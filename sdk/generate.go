package sdk

// aerie.gen.go is generated from the repository's openapi.yaml (OpenAPI 3.1;
// oapi-codegen v2.8.2 reads it directly, nullable `type: [T, 'null']` fields
// become pointers). TestGeneratedCodeIsCurrent fails when it is stale.
//go:generate go tool oapi-codegen -config oapi-codegen.yaml ../openapi.yaml
