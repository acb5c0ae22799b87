//! The service catalog that comes with a token, and endpoint selection by
//! service type, interface and region.

use std::collections::BTreeSet;

use crate::cloud::credentials::Interface;
use crate::cloud::error::CloudError;

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Catalog {
    pub services: Vec<CatalogService>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CatalogService {
    pub service_type: String,
    pub endpoints: Vec<CatalogEndpoint>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CatalogEndpoint {
    pub interface: Interface,
    /// Region name (v2 `region`, v3 `region` or `region_id`).
    pub regions: Vec<String>,
    pub url: String,
}

impl Catalog {
    /// The URL of the first service type in `types` (in preference order)
    /// that has an endpoint for `interface` in `region`. With no region, the
    /// service must be offered in exactly one region.
    pub fn endpoint(
        &self,
        label: &'static str,
        types: &[&str],
        interface: Interface,
        region: Option<&str>,
    ) -> Result<String, CloudError> {
        let candidates: Vec<&CatalogService> = types
            .iter()
            .flat_map(|t| self.services.iter().filter(move |s| s.service_type == *t))
            .collect();
        let not_found = |message: String| CloudError::EndpointNotFound {
            service: label,
            message,
        };
        if candidates.is_empty() {
            let offered: BTreeSet<&str> = self
                .services
                .iter()
                .map(|s| s.service_type.as_str())
                .collect();
            return Err(not_found(format!(
                "the service catalog has no service of type {}; it offers: {}",
                types.join(" or "),
                join_or_none(offered)
            )));
        }

        let mut all_regions = BTreeSet::new();
        let mut interfaces_in_region = BTreeSet::new();
        for service in &candidates {
            let with_interface: Vec<&CatalogEndpoint> = service
                .endpoints
                .iter()
                .filter(|e| e.interface == interface)
                .collect();
            for e in &service.endpoints {
                all_regions.extend(e.regions.iter().map(String::as_str));
            }
            match region {
                Some(region) => {
                    for e in &service.endpoints {
                        if e.regions.iter().any(|r| r == region) {
                            interfaces_in_region.insert(e.interface.as_str());
                        }
                    }
                    if let Some(e) = with_interface
                        .iter()
                        .find(|e| e.regions.iter().any(|r| r == region))
                    {
                        return Ok(e.url.clone());
                    }
                }
                None => {
                    let regions: BTreeSet<&str> = with_interface
                        .iter()
                        .flat_map(|e| e.regions.first().map(String::as_str))
                        .collect();
                    if regions.len() > 1 {
                        return Err(not_found(format!(
                            "the catalog offers {label} in several regions ({}); set `region_name`",
                            join_or_none(regions)
                        )));
                    }
                    if let Some(e) = with_interface.first() {
                        return Ok(e.url.clone());
                    }
                }
            }
        }

        Err(not_found(match region {
            Some(region) if !interfaces_in_region.is_empty() => format!(
                "no {} endpoint for {label} in region `{region}` (interfaces offered there: {})",
                interface.as_str(),
                join_or_none(interfaces_in_region)
            ),
            Some(region) => format!(
                "no {label} endpoint in region `{region}`; the catalog offers regions: {}",
                join_or_none(all_regions)
            ),
            None => format!("no {} endpoint for {label}", interface.as_str()),
        }))
    }
}

fn join_or_none<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.into_iter().collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(interface: Interface, region: &str, url: &str) -> CatalogEndpoint {
        CatalogEndpoint {
            interface,
            regions: vec![region.to_string()],
            url: url.to_string(),
        }
    }

    fn catalog() -> Catalog {
        Catalog {
            services: vec![
                CatalogService {
                    service_type: "volumev3".into(),
                    endpoints: vec![
                        ep(Interface::Public, "KR1", "https://kr1/v3/p"),
                        ep(Interface::Internal, "KR1", "https://kr1-int/v3/p"),
                        ep(Interface::Public, "KR2", "https://kr2/v3/p"),
                    ],
                },
                CatalogService {
                    service_type: "block-storage".into(),
                    endpoints: vec![ep(Interface::Public, "KR1", "https://bs-kr1/v3/p")],
                },
                CatalogService {
                    service_type: "image".into(),
                    endpoints: vec![ep(Interface::Public, "KR1", "https://img-kr1")],
                },
            ],
        }
    }

    #[test]
    fn picks_by_type_preference_interface_and_region() {
        let c = catalog();
        let types = ["block-storage", "volumev3"];
        assert_eq!(
            c.endpoint("block-storage", &types, Interface::Public, Some("KR1"))
                .unwrap(),
            "https://bs-kr1/v3/p"
        );
        assert_eq!(
            c.endpoint("block-storage", &types, Interface::Public, Some("KR2"))
                .unwrap(),
            "https://kr2/v3/p"
        );
        assert_eq!(
            c.endpoint("block-storage", &types, Interface::Internal, Some("KR1"))
                .unwrap(),
            "https://kr1-int/v3/p"
        );
        assert_eq!(
            c.endpoint("image", &["image"], Interface::Public, None)
                .unwrap(),
            "https://img-kr1"
        );
    }

    #[test]
    fn a_wrong_region_lists_the_regions_offered() {
        let e = catalog()
            .endpoint("image", &["image"], Interface::Public, Some("JP1"))
            .unwrap_err();
        let CloudError::EndpointNotFound { message, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(
            message.contains("`JP1`") && message.contains("KR1"),
            "{message}"
        );
        assert_eq!(e.reason(), "EndpointNotFound");
    }

    #[test]
    fn several_regions_without_region_name_is_an_error() {
        let e = catalog()
            .endpoint("block-storage", &["volumev3"], Interface::Public, None)
            .unwrap_err();
        assert!(e.message().contains("KR1, KR2") && e.message().contains("region_name"));
    }

    #[test]
    fn a_missing_service_type_lists_what_is_offered() {
        let e = catalog()
            .endpoint(
                "block-storage",
                &["volumev2"],
                Interface::Public,
                Some("KR1"),
            )
            .unwrap_err();
        assert!(e.message().contains("volumev2") && e.message().contains("image"));
    }

    #[test]
    fn a_missing_interface_is_explained() {
        let e = catalog()
            .endpoint("image", &["image"], Interface::Admin, Some("KR1"))
            .unwrap_err();
        assert!(e.message().contains("admin") && e.message().contains("public"));
    }
}
