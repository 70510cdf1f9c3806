{#- Post-hook of fct_monthly_sales: set the current category (dim_products) on
    the rows of a product whose category changed. A product has one category
    at a time, so its groups stay the same. Renders nothing on a full build. -#}
{% macro update_changed_categories() -%}
    {%- if is_incremental() -%}
        update {{ this }} as kept
        set category = products.category
        from {{ ref('dim_products') }} as products
        where
            kept.product_id = products.product_id
            and kept.category is distinct from products.category
    {%- endif -%}
{%- endmacro %}
