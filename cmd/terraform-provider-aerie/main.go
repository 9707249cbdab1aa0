// Command terraform-provider-aerie is the Terraform provider for Aerie
// (source aeriemq/aerie), built on terraform-plugin-framework. Terraform
// starts it; run it with -debug to attach a debugger.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/aeriemq/aerie/internal/buildinfo"
)

func main() {
	debug := flag.Bool("debug", false, "run with support for debuggers such as delve")
	flag.Parse()
	err := providerserver.Serve(context.Background(), func() provider.Provider {
		return &aerieProvider{version: buildinfo.Version, connect: connectSDK}
	}, providerserver.ServeOpts{Address: "registry.terraform.io/aeriemq/aerie", Debug: *debug})
	if err != nil {
		log.Fatal(err)
	}
}
