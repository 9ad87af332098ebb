//! Personal data named by a label: a name after `姓名：`, an address after
//! `住址：`, in the forms people write them.

use super::Rng;
use super::pii::{Generated, text_secret};
use super::text::Person;

pub(super) fn person_name(rng: &mut Rng, turn: usize) -> Generated {
    let name = Person::pick(rng).chinese;
    let secret = text_secret(name);
    match turn % 7 {
        0 => ("name_label", format!("姓名：{name}"), secret),
        1 => ("contact_label", format!("联系人：{name}"), secret),
        2 => ("ascii_colon", format!("姓名: {name}"), secret),
        3 => ("applicant_spaced", format!("申请人 ： {name}"), secret),
        4 => {
            let name = *rng.pick(&["艾力·买买提", "阿依古丽·吐尔逊", "古丽娜尔·艾山"]);
            (
                "minority_middle_dot",
                format!("申请人：{name}"),
                text_secret(name),
            )
        }
        5 => (
            "reporter_then_phone",
            format!("反馈人：{name}，电话{}", rng.digits(4)),
            secret,
        ),
        _ => ("full_name_label", format!("真实姓名：{name}"), secret),
    }
}

pub(super) fn address(rng: &mut Rng, turn: usize) -> Generated {
    let (city, district) = *rng.pick(&[
        ("北京市", "海淀区"),
        ("上海市", "浦东新区"),
        ("广东省深圳市", "南山区"),
        ("四川省成都市", "武侯区"),
        ("浙江省杭州市", "西湖区"),
    ]);
    let road = *rng.pick(&["中关村大街", "世纪大道", "科技园路", "人民南路", "文三路"]);
    let street = format!("{road}{}号", rng.range(1, 300));
    let room = format!("{}栋{}室", rng.range(1, 30), rng.range(101, 2999));
    let secret = text_secret(&street);
    match turn % 5 {
        0 => (
            "home_full",
            format!("住址：{city}{district}{street}{room}"),
            secret,
        ),
        1 => (
            "mailing",
            format!("通讯地址：{city}{district}{street}"),
            secret,
        ),
        2 => (
            "delivery_ascii_colon",
            format!("收货地址: {city}{district}{street}{room}"),
            secret,
        ),
        3 => {
            let village = format!(
                "{}村{}组",
                rng.pick(&["王庄", "李家", "石门"]),
                rng.range(1, 12)
            );
            (
                "village",
                format!(
                    "户籍地址：{city}{}县{}镇{village}",
                    rng.pick(&["蓝田", "长丰"]),
                    rng.pick(&["城关", "双河"])
                ),
                text_secret(&village),
            )
        }
        _ => (
            "label_spaced",
            format!("家庭住址 ： {city}{district}{street}"),
            secret,
        ),
    }
}
